"""``treesynth tune TASK``: an Optuna study over the tree shape, trading dataset diversity against cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from treesynth.cli import options as opt
from treesynth.cli._common import cli_errors


def register(app: typer.Typer) -> None:
    """Add the ``tune`` command to ``app``."""
    app.command("tune", no_args_is_help=True)(tune_command)


def tune_command(
    task: Annotated[str, typer.Argument(help="The task in one sentence, or a YAML task file.")],
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold (a resumed study runs the "
                                        "rest).")] = 20,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL, e.g. sqlite:///study.db (opens in "
                                                "optuna-dashboard). Default: sqlite:///<out>/study.db.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name. Default: derived from the task, config and "
                                              "objectives.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report and trial run directories.")] = Path("tune"),
    diversity: Annotated[str, typer.Option(help="vendi | mean-distance (mean pairwise cosine distance) over the "
                                           "whole generated set.")] = "vendi",
    cost: Annotated[str, typer.Option(help="calls | tokens.")] = "calls",
    budget: Annotated[int | None, typer.Option(help="Most cost (in --cost units) per trial; over-budget trials are "
                                               "stopped and pruned.")] = None,
    embedder: Annotated[str, typer.Option(help="Embedder of the diversity: lexical (numpy only) | minilm | "
                                          "st:<model> | litellm:<model>.")] = "lexical",
    space: Annotated[Path | None, typer.Option(help="YAML search space (ranges per parameter, programs).")] = None,
    program: Annotated[list[Path] | None, typer.Option("--program", help="A compiled program trials may choose; "
                                                       "repeatable.")] = None,
    startup_trials: Annotated[int, typer.Option(help="Random trials before TPE models the space.")] = 5,
    model: opt.Model = None, api_base: opt.ApiBase = None, structured_output: opt.StructuredOutput = None,
    role_model: opt.RoleModels = None,
    role_temperature: opt.RoleTemperatures = None, samples: opt.Samples = None, concurrency: opt.Concurrency = None,
    seed: opt.Seed = None, config: opt.Config = None,
) -> None:
    """Tune depth, width, pivots, samples per call and temperatures for TASK; write the Pareto front.

    Each trial generates -n samples. Writes front.md, front.csv, front.png and chosen.yaml (use it with
    `treesynth run TASK --config chosen.yaml`) under --out.
    """
    with cli_errors():
        from dataclasses import replace

        from treesynth.models import Task
        from treesynth.optimizers.search_space import SearchSpace
        from treesynth.optimizers.tune import TuneOptions, tune

        parsed = Task.from_arg(task)
        cfg = opt.build_config(config, role_models=role_model, role_temperatures=role_temperature, model=model,
                               api_base=api_base, structured_output=structured_output,
                               samples=samples, concurrency=concurrency, seed=seed)
        search = SearchSpace.load(space) if space else SearchSpace()
        if program:
            search = replace(search, programs=tuple(dict.fromkeys([*search.programs, *map(str, program)])))
        options = TuneOptions(trials=trials, storage=storage, study_name=study, seed=cfg.seed,
                              diversity=diversity, cost=cost,  # type: ignore[arg-type]  # validated by TuneOptions
                              budget=budget, embedder=embedder, startup_trials=startup_trials, space=search)
        result = tune(parsed, cfg, out, options)
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
