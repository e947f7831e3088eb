"""``treesynth balance``: even out an existing dataset over a TreeSynth tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from treesynth.cli._common import cli_command, fail
from treesynth.cli.options import RunOptions
from treesynth.wording import plural


def register(app: typer.Typer) -> None:
    """Add the ``balance`` command to ``app``."""
    app.command("balance", no_args_is_help=True)(balance)


_ONE_OF = r"\[default: none; give one of --per-leaf, --total, --target-dist]"


@dataclass(frozen=True)
class TargetOptions:
    """How many samples every leaf should end with: ``--per-leaf``, ``--total`` or ``--target-dist``."""

    per_leaf: Annotated[int | None, typer.Option(help="Target samples in every leaf. " + _ONE_OF)] = None
    total: Annotated[int | None, typer.Option(help="Target total, spread evenly over leaves. " + _ONE_OF)] = None
    target_dist: Annotated[Path | None, typer.Option(help='JSON {"total": N, "weights": {leaf_id: w}}. '
                                                          + _ONE_OF)] = None


@cli_command(omit=("samples",))
def balance(
    data: Annotated[Path, typer.Argument(help="The dataset: a JSONL file of records (never modified).")],
    task: Annotated[str, typer.Option("--task", "-t", help="What the data is, in one sentence (or a YAML task "
                                      "file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (re-use it to resume).")],
    *,
    tree: Annotated[Path | None, typer.Option(help="Reuse this tree.json instead of building a tree. "
                                                r"\[default: build one]")] = None,
    target: TargetOptions,
    field: Annotated[str | None, typer.Option(help="Text field to route by, or a template like "
                                              "'{question} {answer}'. \\[default: 'text', else "
                                              "a record's 'fields', else its one string field]")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=200, help="Samples routed per LLM call.")] = 20,
    options: RunOptions,
) -> None:
    """Route DATA's samples to the leaves of a tree, downsample crowded leaves and synthesize into sparse ones.

    Writes balanced.jsonl: every record with origin, leaf_id and path; originals verbatim, synthesized records with
    the originals' columns (non-text ones null).

    Also writes routing.jsonl (where every input line went), unrouted.jsonl, report.md with a before/after picture,
    tree.json and run.json.
    """
    from treesynth.balance import Balancer, BalanceTarget

    goal = BalanceTarget(per_leaf=target.per_leaf, total=target.total, distribution=target.target_dist)
    result = Balancer(options.to_config(), batch_size=batch_size).balance(data, task, out, goal, text_field=field,
                                                                          tree=tree)
    counts = result.summary["counts"]
    typer.echo(f"{result.summary['status']}: {counts['samples']} records ({counts['kept']} kept, "
               f"{counts['synthesized']} synthesized) over {plural(counts['leaves'], 'leaf')}; {counts['downsampled']} "
               f"downsampled, {counts['duplicate']} duplicates, {counts['unrouted']} unrouted -> {result.out}")
    if result.summary["status"] != "complete":
        fail(result.summary.get("error") or f"balance is partial (shortfall of {counts['shortfall']}); re-run the "
             "same command to resume", 1)
