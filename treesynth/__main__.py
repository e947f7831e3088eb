"""``python -m treesynth`` runs the CLI."""

from treesynth.cli import main

main()
