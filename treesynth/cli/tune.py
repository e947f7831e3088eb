"""``treesynth tune TASK``: an Optuna study over the tree shape, trading dataset diversity against cost."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from treesynth.cli._common import cli_command
from treesynth.cli.guard import Yes, confirm_spend, planned_spend
from treesynth.cli.options import TREE_SHAPE, RunOptions

if TYPE_CHECKING:
    from treesynth.optimizers.tune import TuneOptions


def register(app: typer.Typer) -> None:
    """Add the ``tune`` command to ``app``."""
    app.command("tune", no_args_is_help=True)(tune_command)


@dataclass(frozen=True)
class StudyOptions:
    """Which Optuna study, where it is stored and how many trials it should hold."""

    trials: Annotated[int, typer.Option(help="Finished trials the study should hold (a resumed study runs the "
                                        "rest).")] = 20
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL, e.g. sqlite:///study.db (opens in "
                                                "optuna-dashboard). Default: sqlite:///<out>/study.db.")] = None
    study: Annotated[str | None, typer.Option(help="Study name. Default: derived from the task, config and "
                                              "objectives.")] = None


@dataclass(frozen=True)
class SearchOptions:
    """The two objectives, the per-trial budget and the search space."""

    diversity: Annotated[str, typer.Option(help="vendi | mean-distance (mean pairwise cosine distance) over the "
                                           "whole generated set.")] = "vendi"
    cost: Annotated[str, typer.Option(help="calls | tokens.")] = "calls"
    budget: Annotated[int | None, typer.Option(help="Most cost (in --cost units) per trial; over-budget trials are "
                                               "stopped and pruned. " r"\[default: no limit]")] = None
    embedder: Annotated[str, typer.Option(help="Embedder of the diversity: lexical (numpy only) | minilm | "
                                          "st:<model> | litellm:<model>.")] = "lexical"
    space: Annotated[Path | None, typer.Option(help="YAML search space (ranges per parameter, programs). "
                                                r"\[default: the built-in space]")] = None
    program: Annotated[list[Path] | None, typer.Option("--program", help="A compiled program trials may choose; "
                                                       "repeatable. " r"\[default: none]")] = None
    startup_trials: Annotated[int, typer.Option(help="Random trials before TPE models the space.")] = 5

    def to_tune_options(self, study: StudyOptions, seed: int) -> TuneOptions:
        """The study's :class:`TuneOptions` (which validates the names) for a run seeded ``seed``."""
        from treesynth.optimizers.search_space import SearchSpace
        from treesynth.optimizers.tune import TuneOptions

        search = SearchSpace.load(self.space) if self.space else SearchSpace()
        if self.program:
            search = replace(search, programs=tuple(dict.fromkeys([*search.programs, *map(str, self.program)])))
        return TuneOptions(trials=study.trials, storage=study.storage, study_name=study.study, seed=seed,
                           diversity=self.diversity, cost=self.cost,  # type: ignore[arg-type]  # validated
                           budget=self.budget, embedder=self.embedder, startup_trials=self.startup_trials,
                           space=search)


@cli_command(omit=TREE_SHAPE)
def tune_command(
    task: Annotated[str, typer.Argument(help="The task in one sentence, or a YAML task file.")],
    experiment: StudyOptions,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report and trial run directories.")] = Path("tune"),
    *,
    search: SearchOptions,
    options: RunOptions,
    yes: Yes = False,
) -> None:
    """Tune depth, width, pivots, samples per call and temperatures for TASK; write the Pareto front.

    Each trial generates -n samples. Writes front.md, front.csv, front.png and chosen.yaml (use it with
    `treesynth run TASK --config chosen.yaml`) under --out.
    """
    from treesynth.models import Task
    from treesynth.optimizers.tune import tune
    from treesynth.rundir import DirLock

    parsed = Task.from_arg(task)
    cfg = options.to_config()
    trials = experiment.trials  # each planned with the base shape
    confirm_spend(cfg, planned_spend(cfg, runs=trials), yes=yes, runs=trials)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet_optuna(), DirLock.acquire(out):  # Optuna's [I …] line per trial would bury the command's output
        result = tune(parsed, cfg, out, search.to_tune_options(experiment, cfg.seed))
    typer.echo(f"study {result.study_name} ({result.storage}): {result.finished} finished trials ({result.ran} run "
               f"now, {result.recovered} recovered from an interrupted run)")
    chosen = result.chosen
    if chosen is None:
        typer.echo("no feasible complete trial yet; see " + result.files.get("table", str(out)))
        return
    typer.echo(f"Pareto front: {len(result.front)} trial(s); chosen trial {chosen['trial']}: "
               f"{result.metric_names[0]} {chosen['diversity']:.4f}, {result.metric_names[1]} {chosen['cost']:g}")
    for kind, path in result.files.items():
        typer.echo(f"  {kind}: {path}")


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs warnings and errors only while the block runs; its previous level is restored after."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)
