"""``treesynth run``: synthesize a dataset for a task into a resumable run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from treesynth.aio import run_sync
from treesynth.cli._common import cli_command, fail
from treesynth.cli.guard import Spend, Yes, confirm_spend, planned_spend, warn_spend
from treesynth.cli.options import RunOptions
from treesynth.models import Task, stable_hash

DEFAULT_RUNS_DIR = Path("runs")

Out = Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (re-use it to resume). "
                                          r"\[default: runs/<task-slug>]")]


def default_out(task: Task) -> Path:
    """``runs/<slug>-<hash>``: the same task maps to the same directory, so re-running resumes."""
    slug = "-".join(task.description.casefold().split())[:40].strip("-")
    slug = "".join(c for c in slug if c.isalnum() or c == "-") or "task"
    return DEFAULT_RUNS_DIR / f"{slug}-{stable_hash(task.model_dump(mode='json'), length=6)}"


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""
    app.command("run", no_args_is_help=True)(run)


@cli_command()
def run(
    task: Annotated[str, typer.Argument(help="The task in one sentence, or a YAML task file.")],
    options: RunOptions,
    out: Out = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only: grow the tree into --out (a later run "
                                          "reuses it) and print the projected calls, tokens and cost.")] = False,
    analytic: Annotated[bool, typer.Option("--analytic", help="With --dry-run: make no LLM call; bound the tree "
                                           "by full width.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print the plan as JSON.")] = False,
    program: Annotated[Path | None, typer.Option("--program", help="A compiled program (JSON from `treesynth "
                                                 r"compile`). \[default: the uncompiled program]")] = None,
    yes: Yes = False,
) -> None:
    """Build the partition tree for TASK and synthesize a dataset at its leaves.

    A run planned above the confirmation threshold (10,000 LLM calls or $5 by default) asks first on a terminal
    and needs --yes otherwise; --max-calls and --max-cost cap what the run may spend.
    """
    plan_only = [flag for flag, given in (("--analytic", analytic), ("--json", as_json)) if given]
    if plan_only and not dry_run:
        verb = "apply" if len(plan_only) > 1 else "applies"
        fail(f"{' and '.join(plan_only)} only {verb} to a plan: add --dry-run (without it the command runs the "
             "task and spends)", 2)
    parsed = Task.from_arg(task)
    cfg = options.to_config()
    compiled = _load_program(program)
    if dry_run:
        if not analytic:  # growing the tree spends its calls
            confirm_spend(cfg, planned_spend(cfg, tree_only=True), yes=yes)
        _plan(parsed, cfg, out or default_out(parsed), analytic=analytic, as_json=as_json, program=compiled)
        return
    confirm_spend(cfg, planned_spend(cfg), yes=yes)
    result = _execute(parsed, cfg, out or default_out(parsed), quiet, compiled)
    counts = result.summary["counts"]
    llm = result.summary["llm"]
    typer.echo(f"{result.status}: {counts['samples']}/{counts['target']} samples, {counts['leaves']} leaves, "
               f"{counts['nodes']} nodes, {llm['calls']} LLM calls -> {result.out}")
    if result.status != "complete":
        error = result.summary.get("error")
        fail(error or f"run is partial (shortfall of {counts['shortfall']} samples; see run.json); re-run the "
             "same command to resume", 1)


def _load_program(path: Path | None) -> Any:
    if path is None:
        return None
    from treesynth.optimizers.program_io import load_program

    return load_program(path)


def _plan(task: Task, cfg: Any, out: Path, *, analytic: bool, as_json: bool, program: Any = None) -> None:
    import json

    from treesynth.pipeline import TreeSynth
    from treesynth.planning import analytic_plan, aplan
    from treesynth.providers import default_model

    if analytic:
        plan = analytic_plan(cfg, cfg.model.model or default_model())
    else:
        plan = run_sync(lambda: aplan(TreeSynth(cfg, program=program), task, out))
    warning = warn_spend(cfg, Spend(plan.calls, plan.cost_usd))
    if as_json:
        typer.echo(json.dumps({**plan.as_dict(), "warning": warning, "config": cfg.model_dump(mode="json")},
                              indent=2))
        return
    cost = "unknown" if plan.cost_usd is None else f"${plan.cost_usd:.4f}"
    kind = "upper bound, no calls made" if plan.analytic else f"tree grown into {out}; synthesis projected"
    typer.echo(f"plan ({kind}): {plan.nodes} nodes, {plan.leaves} leaves, {plan.calls} LLM calls "
               f"({plan.tree_calls} tree + {plan.leaf_calls} synthesis), ~{plan.prompt_tokens:,} prompt + "
               f"~{plan.completion_tokens:,} completion tokens, cost {cost}")


def _execute(task: Task, cfg: Any, out: Path, quiet: bool, program: Any = None) -> Any:
    from treesynth.cli.progress import ProgressView
    from treesynth.pipeline import TreeSynth

    view = ProgressView(enabled=not quiet, target=cfg.synthesis.samples)
    with view:
        return TreeSynth(cfg, program=program, on_progress=view.update).run(task, out)
