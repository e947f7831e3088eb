"""Start the fake OpenAI-compatible server as a separate process (so it does not share the GIL)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fake_server_process(*args: str) -> Iterator[str]:
    """Yield the base URL of a fake server started with ``args``; terminate it afterwards."""
    with fake_server(*args) as (url, _pid):
        yield url


@contextmanager
def fake_server(*args: str) -> Iterator[tuple[str, int]]:
    """Yield the base URL and process id of a fake server started with ``args``; terminate it afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "treesynth.testing.fake_server", "--port", "0",
                             "--log-level", "WARNING", *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield line.removeprefix("listening on "), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
