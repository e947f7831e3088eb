"""``treesynth run``: synthesize a dataset for a task into a resumable run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from treesynth.cli._common import cli_errors, fail
from treesynth.models import Task, stable_hash

DEFAULT_RUNS_DIR = Path("runs")


def default_out(task: Task) -> Path:
    """``runs/<slug>-<hash>``: the same task maps to the same directory, so re-running resumes."""
    slug = "-".join(task.description.casefold().split())[:40].strip("-")
    slug = "".join(c for c in slug if c.isalnum() or c == "-") or "task"
    return DEFAULT_RUNS_DIR / f"{slug}-{stable_hash(task.model_dump(mode='json'), length=6)}"


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""
    app.command("run", no_args_is_help=True)(run)


def run(
    task: Annotated[str, typer.Argument(help="The task in one sentence, or a YAML task file.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="provider/model (litellm), local/gemma-3-270m "
                                              "or test/fake. Default: the embedded model.")] = None,
    api_base: Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")] = None,
    depth: Annotated[int | None, typer.Option(help="Maximum tree depth (>= 1).")] = None,
    width: Annotated[int | None, typer.Option(help="Maximum finite children per node (>= 2).")] = None,
    pivots: Annotated[int | None, typer.Option(help="Pivot samples per internal node.")] = None,
    samples: Annotated[int | None, typer.Option("--samples", "-n", help="Samples to deliver.")] = None,
    samples_per_call: Annotated[int | None, typer.Option(help="Samples requested per synthesis call.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Most LLM calls in flight.")] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed (drives every per-call seed).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (re-use it to resume). "
                                             "Default: runs/<task-slug>.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (or a run.json).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Build the partition tree for TASK and synthesize a dataset at its leaves."""
    from treesynth.config import RunConfig

    with cli_errors():
        parsed = Task.from_arg(task)
        base = RunConfig.load(config) if config else RunConfig()
        overrides: dict[str, Any] = {
            "model.model": model, "model.api_base": api_base, "tree.depth": depth, "tree.width": width,
            "tree.pivots": pivots, "synthesis.samples": samples, "synthesis.samples_per_call": samples_per_call,
            "concurrency": concurrency, "seed": seed,
        }
        cfg = base.with_overrides(overrides)
        target = out or default_out(parsed)
        result = _execute(parsed, cfg, target, quiet)
    counts = result.summary["counts"]
    llm = result.summary["llm"]
    typer.echo(f"{result.status}: {counts['samples']}/{counts['target']} samples, {counts['leaves']} leaves, "
               f"{counts['nodes']} nodes, {llm['calls']} LLM calls -> {result.out}")
    if result.status != "complete":
        reason = result.summary.get("error") or f"shortfall of {counts['shortfall']} samples"
        fail(f"run is partial ({reason}); re-run the same command to resume", 1)


def _execute(task: Task, cfg: Any, out: Path, quiet: bool) -> Any:
    from treesynth.cli.progress import ProgressView
    from treesynth.pipeline import TreeSynth

    view = ProgressView(enabled=not quiet, target=cfg.synthesis.samples)
    with view:
        return TreeSynth(cfg, on_progress=view.update).run(task, out)
