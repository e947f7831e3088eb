"""``treesynth plan``: expected nodes, leaves, calls, tokens and cost before synthesis is paid for."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from treesynth.cli import options as opt
from treesynth.cli._common import cli_errors
from treesynth.cli.run import default_out


def register(app: typer.Typer) -> None:
    """Add the ``plan`` command to ``app``."""
    app.command("plan", no_args_is_help=True)(plan)


def plan(
    task: Annotated[str, typer.Argument(help="The task in one sentence, or a YAML task file.")],
    model: opt.Model = None, api_base: opt.ApiBase = None, role_model: opt.RoleModels = None,
    role_temperature: opt.RoleTemperatures = None, depth: opt.Depth = None, width: opt.Width = None,
    pivots: opt.Pivots = None, samples: opt.Samples = None, samples_per_call: opt.PerCall = None,
    concurrency: opt.Concurrency = None, seed: opt.Seed = None, out: opt.Out = None, config: opt.Config = None,
    analytic: Annotated[bool, typer.Option(help="Make no LLM call: bound the tree by full width.")] = False,
    dup_rate: Annotated[float, typer.Option(min=0.0, max=0.9, help="Expected duplicate rate.")] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Estimate a run: grow the tree into --out (a following `run` reuses it), then project synthesis."""
    from treesynth.models import Task
    from treesynth.pipeline import TreeSynth
    from treesynth.planning import analytic_plan, aplan
    from treesynth.providers import default_model

    with cli_errors():
        parsed = Task.from_arg(task)
        cfg = opt.build_config(config, role_models=role_model, role_temperatures=role_temperature, model=model,
                               api_base=api_base, depth=depth, width=width, pivots=pivots, samples=samples,
                               samples_per_call=samples_per_call, concurrency=concurrency, seed=seed)
        if analytic:
            result = analytic_plan(cfg, cfg.model.model or default_model(), dup_rate)
        else:
            result = asyncio.run(aplan(TreeSynth(cfg), parsed, out or default_out(parsed), dup_rate))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    cost = "unknown" if result.cost_usd is None else f"${result.cost_usd:.4f}"
    kind = "upper bound, no calls made" if result.analytic else "tree grown; synthesis projected"
    typer.echo(f"plan ({kind}): {result.nodes} nodes, {result.leaves} leaves, {result.calls} LLM calls "
               f"({result.tree_calls} tree + {result.leaf_calls} synthesis), ~{result.prompt_tokens:,} prompt + "
               f"~{result.completion_tokens:,} completion tokens, cost {cost}")
