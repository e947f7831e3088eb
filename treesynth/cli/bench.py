"""``treesynth bench``: run a benchmark sweep of TreeSynth against baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from treesynth.cli._common import cli_command
from treesynth.cli.guard import Spend, Yes, capped, confirm_spend, planned_spend
from treesynth.cli.options import MaxCalls, MaxCost
from treesynth.wording import plural


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench", no_args_is_help=True)(bench)


@cli_command()
def bench(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML (methods, models, sizes, seeds, configs).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep directory (re-use it to resume).")],
    max_calls: MaxCalls = None,
    max_cost: MaxCost = None,
    yes: Yes = False,
) -> None:
    """Run every cell of a sweep (resumable), evaluate diversity and cost, write results.jsonl/.md and plots.

    --max-calls and --max-cost cap every cell (each is a run directory); a sweep planned above the confirmation
    threshold asks first (or needs --yes).
    """
    from treesynth.rundir import DirLock
    from treesynth.store import prepare_out_dir
    from treesynth.sweep import Sweep, cell_config, cells, run_sweep

    sweep = Sweep.load(sweep_file)
    caps = {key: value for key, value in (("max_calls", max_calls), ("max_cost_usd", max_cost)) if value is not None}
    if caps:
        sweep = sweep.model_copy(update={"config": {**sweep.config,
                                                    "budget": {**sweep.config.get("budget", {}), **caps}}})
    configs = [cell_config(sweep, cell) for cell in cells(sweep)]
    if configs:
        spend = Spend(0, 0.0)
        for cfg in configs:  # each cell's plan, within its caps
            spend = spend + capped(cfg, planned_spend(cfg))
        confirm_spend(configs[0], spend, yes=yes, runs=len(configs))
    if out.exists() and any(out.iterdir()) and not (out / "cells").exists():
        prepare_out_dir(out)  # raises: not a sweep directory
    out.mkdir(parents=True, exist_ok=True)
    with DirLock.acquire(out):  # one process per sweep directory (each cell's run is locked too)
        rows = run_sweep(sweep, out, on_cell=lambda cell, i, n: typer.echo(f"[{i + 1}/{n}] {cell.name}", err=True))
    typer.echo(f"{plural(len(rows), 'cell')} -> {out / 'results.md'}")
