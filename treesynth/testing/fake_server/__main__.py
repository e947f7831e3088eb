"""``python -m treesynth.testing.fake_server``: serve until SIGTERM/SIGINT (see :func:`cli.main`)."""

from treesynth.testing.fake_server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
