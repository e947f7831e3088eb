"""Spending guards at plan time: a command planned above the confirmation threshold needs a yes.

The planned numbers come from the analytic plan (:func:`treesynth.planning.analytic_plan`: no LLM call, an
upper bound), limited by the caps (``--max-calls``/``--max-cost``) when they are lower. Above
``budget.confirm_calls`` calls or ``budget.confirm_cost_usd`` dollars a terminal is asked; without a terminal
the command needs ``--yes`` (or a cap below the threshold).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from treesynth.cli._common import fail
from treesynth.errors import ConfigError

if TYPE_CHECKING:
    from treesynth.config import RunConfig

Yes = Annotated[bool, typer.Option("--yes", help="Go ahead without asking when the planned calls or cost are above "
                                                 "the confirmation threshold.")]


@dataclass(frozen=True)
class Spend:
    """Planned LLM calls and estimated US dollars (``None``: a price is unknown)."""

    calls: int
    cost_usd: float | None

    def __add__(self, other: Spend) -> Spend:
        """Both spends together."""
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        return Spend(self.calls + other.calls, cost)

    def describe(self) -> str:
        """``N LLM calls (~$X)``."""
        cost = "cost unknown" if self.cost_usd is None else f"~${self.cost_usd:,.2f}"
        return f"{self.calls:,} LLM calls ({cost})"


def planned_spend(config: RunConfig, runs: int = 1, *, tree_only: bool = False) -> Spend:
    """The analytic plan of ``runs`` runs of ``config`` (free: no call is made); ``tree_only``: tree building's
    share alone (a dry run's spend)."""
    from treesynth.planning import analytic_plan
    from treesynth.providers import default_model

    plan = analytic_plan(config, config.model.model or default_model())
    calls = plan.tree_calls if tree_only else plan.calls
    cost = None if plan.cost_usd is None else plan.cost_usd * runs * calls / max(1, plan.calls)
    return Spend(calls * runs, cost)


def capped(config: RunConfig, spend: Spend, runs: int = 1) -> Spend:
    """``spend`` of ``runs`` runs limited by the caps of ``config`` (which apply to each run)."""
    budget = config.budget
    calls = spend.calls if budget.max_calls is None else min(spend.calls, budget.max_calls * runs)
    cost = spend.cost_usd
    if budget.max_cost_usd is not None and cost:
        share = min(1.0, budget.max_cost_usd * runs / cost)  # a cost cap stops the calls too, at this share
        calls, cost = min(calls, math.ceil(spend.calls * share)), cost * share
    return Spend(calls, cost)


def above_threshold(config: RunConfig, spend: Spend, runs: int = 1) -> str | None:
    """Why ``spend`` of ``runs`` runs (after the caps) needs confirmation, or ``None`` when it does not.

    Raises:
        ConfigError: ``--max-cost`` is set but a planned model's price is unknown (the cap cannot be enforced).
    """
    budget = config.budget
    if budget.max_cost_usd is not None and spend.cost_usd is None:
        raise ConfigError("--max-cost cannot be enforced: a planned model's price is unknown; use --max-calls")
    limited = capped(config, spend, runs)
    if limited.calls <= budget.confirm_calls and (limited.cost_usd or 0.0) <= budget.confirm_cost_usd:
        return None
    return (f"the plan is {limited.describe()}, above the confirmation threshold ({budget.confirm_calls:,} calls or "
            f"${budget.confirm_cost_usd:g})")


def confirm_spend(config: RunConfig, spend: Spend, *, yes: bool, runs: int = 1) -> None:
    """Ask before a spend of ``runs`` runs above the threshold: on a terminal a prompt, otherwise ``--yes`` is
    required (exit 2)."""
    reason = above_threshold(config, spend, runs)
    if reason is None or yes:
        return
    if not on_terminal():
        fail(f"{reason}; pass --yes to go ahead, or cap the spend with --max-cost or --max-calls", 2)
    if not typer.confirm(f"{reason}. Go ahead?", default=False, err=True):
        fail("not confirmed; nothing was spent", 1)


def warn_spend(config: RunConfig, spend: Spend) -> str | None:
    """For a plan that spends nothing: print (on stderr) and return the warning a run of it would trigger."""
    reason = above_threshold(config, spend)
    if reason is None:
        return None
    warning = f"{reason}; a run will ask for confirmation (or need --yes), or cap it with --max-cost or --max-calls"
    typer.echo(f"warning: {warning}", err=True)
    return warning


def on_terminal() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()
