"""``treesynth bench``: run a benchmark sweep of TreeSynth against baselines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from treesynth.cli._common import cli_command
from treesynth.cli.guard import Spend, Yes, capped, confirm_spend, planned_spend
from treesynth.cli.options import MaxCalls, MaxCost, RunOptions, executor_kind
from treesynth.config import ExecutorConfig, RunConfig
from treesynth.wording import plural

if TYPE_CHECKING:
    from treesynth.sweep import Cell

EXECUTOR_FLAGS = ("executor", "ray_address", "workers")
"""The shared options ``bench`` offers (``--executor``, ``--ray-address``, ``--workers``); the rest come from the
sweep file."""


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench", no_args_is_help=True)(bench)


@cli_command(omit=[field.name for field in dataclasses.fields(RunOptions) if field.name not in EXECUTOR_FLAGS])
def bench(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML (methods, models, sizes, seeds, configs).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep directory (re-use it to resume).")],
    options: RunOptions,
    max_calls: MaxCalls = None,
    max_cost: MaxCost = None,
    yes: Yes = False,
) -> None:
    """Run every cell of a sweep (resumable), evaluate diversity and cost, write results.jsonl/.md and plots.

    --max-calls and --max-cost cap every cell (each is a run directory); a sweep planned above the confirmation
    threshold asks first (or needs --yes). With --executor ray (or the sweep file's executor:) up to --workers
    cells run at once, their calls on the Ray cluster; results stay in cell order.
    """
    from treesynth.rundir import DirLock
    from treesynth.store import prepare_out_dir
    from treesynth.sweep import Sweep, cell_config, cells, run_sweep

    sweep = Sweep.load(sweep_file)
    sweep = sweep.model_copy(update={"executor": _executor(sweep.executor, options)})
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
        rows = run_sweep(sweep, out, on_cell=lambda cell, i, n: typer.echo(f"[{i + 1}/{n}] {cell.name}", err=True),
                         on_done=_done if sweep.executor.kind == "ray" else None)
    typer.echo(f"{plural(len(rows), 'cell')} -> {out / 'results.md'}")


def _executor(settings: ExecutorConfig, options: RunOptions) -> ExecutorConfig:
    """The sweep file's executor with the given --executor/--ray-address/--workers on top."""
    kind = executor_kind(options.executor, options.ray_address, options.workers)
    overrides = {"executor.kind": kind, "executor.address": options.ray_address, "executor.workers": options.workers}
    return RunConfig(executor=settings).with_overrides(overrides).executor


def _done(cell: Cell, index: int, total: int, summary: dict[str, Any]) -> None:
    """A cell's end, when several run at once (their start lines interleave)."""
    counts = summary["counts"]
    typer.echo(f"[{index + 1}/{total}] {cell.name}: {summary['status']}, {counts['samples']}/{counts['target']} "
               "samples", err=True)
