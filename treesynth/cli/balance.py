"""``treesynth balance``: even out an existing dataset over a TreeSynth tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from treesynth.cli import options as opt
from treesynth.cli._common import cli_errors, fail


def register(app: typer.Typer) -> None:
    """Add the ``balance`` command to ``app``."""
    app.command("balance", no_args_is_help=True)(balance)


def balance(
    data: Annotated[Path, typer.Argument(help="The dataset: a JSONL file of records (never modified).")],
    task: Annotated[str, typer.Option("--task", "-t", help="What the data is, in one sentence (or a YAML task "
                                      "file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (re-use it to resume).")],
    tree: Annotated[Path | None, typer.Option(help="Reuse this tree.json instead of building a tree.")] = None,
    per_leaf: Annotated[int | None, typer.Option(help="Target samples in every leaf.")] = None,
    total: Annotated[int | None, typer.Option(help="Target total, spread evenly over leaves.")] = None,
    target_dist: Annotated[Path | None, typer.Option(help='JSON {"total": N, "weights": {leaf_id: w}}.')] = None,
    field: Annotated[str | None, typer.Option(help="Text field to route by, or a template like "
                                              "'{question} {answer}'.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=200, help="Samples routed per LLM call.")] = 20,
    model: opt.Model = None, api_base: opt.ApiBase = None, structured_output: opt.StructuredOutput = None,
    role_model: opt.RoleModels = None,
    role_temperature: opt.RoleTemperatures = None, depth: opt.Depth = None, width: opt.Width = None,
    pivots: opt.Pivots = None, samples_per_call: opt.PerCall = None, concurrency: opt.Concurrency = None,
    seed: opt.Seed = None, config: opt.Config = None,
) -> None:
    """Route DATA's samples to the leaves of a tree, downsample crowded leaves and synthesize into sparse ones.

    Writes balanced.jsonl (every record with origin, leaf_id and path; originals verbatim), routing.jsonl
    (where every input line went), unrouted.jsonl, report.md with a before/after picture, tree.json, run.json.
    """
    from treesynth.balance import Balancer, BalanceTarget

    with cli_errors():
        target = BalanceTarget(per_leaf=per_leaf, total=total, distribution=target_dist)
        cfg = opt.build_config(config, role_models=role_model, role_temperatures=role_temperature, model=model,
                               api_base=api_base, structured_output=structured_output,
                               depth=depth, width=width, pivots=pivots, samples=None,
                               samples_per_call=samples_per_call, concurrency=concurrency, seed=seed)
        result = Balancer(cfg, batch_size=batch_size).balance(data, task, out, target, text_field=field, tree=tree)
    counts = result.summary["counts"]
    typer.echo(f"{result.summary['status']}: {counts['samples']} records ({counts['kept']} kept, "
               f"{counts['synthesized']} synthesized) over {counts['leaves']} leaves; {counts['downsampled']} "
               f"downsampled, {counts['duplicate']} duplicates, {counts['unrouted']} unrouted -> {result.out}")
    if result.summary["status"] != "complete":
        fail(f"balance is partial (shortfall of {counts['shortfall']}); re-run the same command to resume", 1)
