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
from treesynth.wording import plural

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
    warnings = _start_warnings(parsed, cfg, out or default_out(parsed))
    result = _execute(parsed, cfg, out or default_out(parsed), quiet, compiled, warnings)
    counts = result.summary["counts"]
    llm = result.summary["llm"]
    reused = result.summary.get("reused") or {}
    done = (reused.get("status") == "complete" and reused.get("target") == counts["target"]
            and reused.get("calls") == llm["calls"] and result.status == "complete")
    typer.echo(f"{'already complete, nothing to do' if done else result.status}: {counts['samples']}/"
               f"{counts['target']} samples, {plural(counts['leaves'], 'leaf')}, {plural(counts['nodes'], 'node')}, "
               f"{plural(llm['calls'], 'LLM call')} -> {result.out}")
    if not done:  # an untouched finished run says so and nothing else
        _warn(_tree_warnings(counts, cfg, result.out))
    if result.status != "complete":
        error = result.summary.get("error")
        fail(error or f"run is partial (shortfall of {counts['shortfall']} samples; see run.json); re-run the "
             "same command to resume", 1)


def _load_program(path: Path | None) -> Any:
    if path is None:
        return None
    from treesynth.optimizers.program_io import load_program

    return load_program(path)


def _warn(lines: tuple[str, ...]) -> None:
    for line in lines:
        typer.echo(f"warning: {line}", err=True)


def _start_warnings(task: Task, cfg: Any, out: Path) -> tuple[str, ...]:
    """Waste warnings printed before anything is spent: from the allocation of the tree already grown in ``out``
    (a ``--dry-run``, an earlier session), else for the thinnest spread the run's tree can reach."""
    from treesynth.planning import full_tree_quotas, grown_tree_quotas, waste_warnings

    grown = grown_tree_quotas(out, cfg)
    quotas = grown if grown is not None else full_tree_quotas(cfg, task)
    return waste_warnings(quotas, cfg.synthesis.samples_per_call, bound=grown is None)


def _tree_warnings(counts: dict[str, Any], cfg: Any, out: Path) -> tuple[str, ...]:
    """A warning for splits that collapsed into one infinite child (their values are not separate branches)."""
    from treesynth.planning import infinite_split_warnings

    return infinite_split_warnings(counts.get("infinite_splits", 0), cfg.tree.width, out)


def _plan(task: Task, cfg: Any, out: Path, *, analytic: bool, as_json: bool, program: Any = None) -> None:
    import json

    from treesynth.pipeline import TreeSynth
    from treesynth.planning import analytic_plan, aplan
    from treesynth.providers import default_model

    if analytic:
        plan = analytic_plan(cfg, cfg.model.model or default_model(), task=task)
    else:
        plan = run_sync(lambda: aplan(TreeSynth(cfg, program=program), task, out))
    _warn(plan.warnings)
    warning = warn_spend(cfg, Spend(plan.calls, plan.cost_usd))
    if as_json:
        typer.echo(json.dumps({**plan.as_dict(), "warning": warning, "config": cfg.model_dump(mode="json")},
                              indent=2))
        return
    cost = "unknown" if plan.cost_usd is None else f"${plan.cost_usd:.4f}"
    kind = "upper bound, no calls made" if plan.analytic else f"tree grown into {out}; synthesis projected"
    typer.echo(f"plan ({kind}): {plural(plan.nodes, 'node')}, {plural(plan.leaves, 'leaf')}, "
               f"{plural(plan.calls, 'LLM call')} ({plan.tree_calls} tree + {plan.leaf_calls} synthesis), "
               f"~{plan.prompt_tokens:,} prompt + ~{plan.completion_tokens:,} completion tokens, cost {cost}")


def _execute(task: Task, cfg: Any, out: Path, quiet: bool, program: Any = None,
             warnings: tuple[str, ...] = ()) -> Any:
    """Run with the progress view; ``warnings`` are printed at the first progress update: once the run directory
    and the models are accepted (so a usage error stays one line), before the first call."""
    from treesynth.cli.progress import ProgressView
    from treesynth.pipeline import TreeSynth

    view = ProgressView(enabled=not quiet, target=cfg.synthesis.samples)
    unsaid = list(warnings)

    def update(progress: Any) -> None:
        for line in unsaid:
            view.note(f"warning: {line}")  # above the live display, which would swallow a plain write
        unsaid.clear()
        view.update(progress)

    with view:
        return TreeSynth(cfg, program=program, on_progress=update).run(task, out)
