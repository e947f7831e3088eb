"""``treesynth bench``: run a benchmark sweep of TreeSynth against baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from treesynth.cli._common import cli_command
from treesynth.wording import plural


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench", no_args_is_help=True)(bench)


@cli_command()
def bench(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML (methods, models, sizes, seeds, configs).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep directory (re-use it to resume).")],
) -> None:
    """Run every cell of a sweep (resumable), evaluate diversity and cost, write results.jsonl/.md and plots."""
    from treesynth.store import prepare_out_dir
    from treesynth.sweep import Sweep, run_sweep

    sweep = Sweep.load(sweep_file)
    if out.exists() and any(out.iterdir()) and not (out / "cells").exists():
        prepare_out_dir(out)  # raises: not a sweep directory
    out.mkdir(parents=True, exist_ok=True)
    rows = run_sweep(sweep, out, on_cell=lambda cell, i, n: typer.echo(f"[{i + 1}/{n}] {cell.name}", err=True))
    typer.echo(f"{plural(len(rows), 'cell')} -> {out / 'results.md'}")
