"""One routing call -- a batch of samples classified by a node's criterion -- as a serializable work item and the
code that makes it.

:class:`RouteCall` is all a batch needs besides the run's fixed settings (the task, the router module's state):
the node, its criterion, options and subspace, the batch's texts (numbered 1..n in order) and the call's seed.
:class:`ModuleRouteCaller` makes the call through a gateway in this process; it is what a local run uses and
what each Ray worker runs (``treesynth.executors.ray_routing``). Checking the answer and storing the routes stay
with the caller of a caller (balance's :class:`~treesynth.balance.routing.Router`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import dspy

from treesynth.models import Task
from treesynth.providers.gateway import Gateway
from treesynth.signatures import RouteSamples, assignments_type, shaped

Assignments = list[tuple[int, str]]
"""A routing answer as the model gave it: ``(sample number, option)`` pairs, unchecked."""


class SampleRouter(dspy.Module):
    """Classifies a batch of samples by one criterion. Owns its predictor once (compilable)."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.route = dspy.Predict(RouteSamples)

    async def aforward(self, task: str, subspace: list[str], criterion: str, options: list[str],
                       samples: list[str], **call: Any) -> dspy.Prediction:
        """Return ``Prediction(assignments=[(number, value), ...])`` as the model answered."""
        signature = shaped(self.route.signature, "assignments", assignments_type(tuple(options), len(samples)))
        pred = await self.route.acall(signature=signature, task=task, subspace=subspace, criterion=criterion,
                                      options=options, samples=samples, **call)
        return dspy.Prediction(assignments=[(a.sample, a.value) for a in pred.assignments.items])


@dataclass(frozen=True)
class RouteCall:
    """One routing batch to classify (plain data: it crosses process boundaries)."""

    node_id: str
    """The node whose children the samples go to (the ledger's node id)."""
    criterion: str
    options: tuple[str, ...]
    """The node's child values and the none-fits option."""
    subspace: tuple[str, ...]
    """The node's path as ``criterion: value`` lines."""
    samples: tuple[str, ...]
    """The batch's texts; the model numbers them 1..n in this order."""
    seed: int


class RouteCaller(Protocol):
    """Makes routing calls: the model's assignments, or ``None`` when the call failed or did not parse."""

    async def __call__(self, call: RouteCall) -> Assignments | None:
        """Make ``call``; raises :class:`~treesynth.errors.ProviderError` when the run must stop."""
        ...


class ModuleRouteCaller:
    """Makes routing calls in this process: ``module`` through ``gateway`` (role and stage ``routing``)."""

    def __init__(self, module: SampleRouter, gateway: Gateway, task: Task) -> None:
        """Wire a caller; see the class docstring."""
        self.module = module
        self.gateway = gateway
        self.task = task

    async def __call__(self, call: RouteCall) -> Assignments | None:
        """One routing call; ``None`` when it failed or its output did not parse."""
        async def run(lm: Any, config: dict[str, Any]) -> Any:
            return await self.module.acall(task=self.task.description, subspace=list(call.subspace),
                                           criterion=call.criterion, options=list(call.options),
                                           samples=list(call.samples), lm=lm, config=config)

        pred = await self.gateway.call("routing", stage="routing", node_id=call.node_id, seed=call.seed, fn=run)
        return None if pred is None else list(pred.assignments)
