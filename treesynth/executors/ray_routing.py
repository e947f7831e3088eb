"""Balance's routing calls on the ray executor's workers, the way leaf calls go there.

The driver sends each batch as a :class:`~treesynth.tree.routing.RouteCall` (plain data) with a
:class:`RouteSpec` (the task and the router module's state: never a pickled LM, cache or lock) to the least
loaded :class:`~treesynth.executors.ray_worker.LeafWorker`, whose ``route`` method makes it through the worker's
own gateway (the run's shared limits) with a :class:`RouteRunner`. The answer comes back as a
:class:`RouteOutcome`; the driver books its call record on its own gateway (ledger and spending caps) and does
everything else -- checking the assignments, storing the routes -- exactly as a local run does. A call whose
worker died goes to another worker (at most ``MAX_LOST`` times).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from treesynth.errors import ProviderError
from treesynth.executors.ray_pool import MAX_LOST, booked
from treesynth.models import Task, stable_hash
from treesynth.providers import CallRecord, Gateway
from treesynth.tree.routing import Assignments, ModuleRouteCaller, RouteCall, SampleRouter


@dataclass(frozen=True)
class RouteSpec:
    """A router as plain data: the task and the router module's (compiled) state."""

    key: str
    """Names the spec (a worker builds each spec's caller once)."""
    task: dict[str, Any]
    router_state: dict[str, Any]

    @classmethod
    def of(cls, module: SampleRouter, task: Task) -> RouteSpec:
        """The spec of ``module`` routing for ``task``."""
        state = module.dump_state()
        return cls(key=stable_hash(task.model_dump_json(), repr(state), "routing"),
                   task=task.model_dump(mode="json"), router_state=state)


@dataclass(frozen=True)
class RouteOutcome:
    """One routing call's result: its ledger record, the model's assignments (``None``: failed or did not parse)
    and the message of a provider error that must stop the run."""

    record: CallRecord | None
    assignments: Assignments | None = None
    stop: str | None = None


class RouteRunner:
    """A worker's routing calls: a :class:`ModuleRouteCaller` per spec on the worker's gateway (the worker runs
    each under its DSPy settings and hands the call's record back: ``LeafWorker.made_here``)."""

    def __init__(self, gateway: Gateway) -> None:
        """Use the worker's ``gateway``."""
        self.gateway = gateway
        self._callers: dict[str, ModuleRouteCaller] = {}

    async def __call__(self, spec: RouteSpec, call: RouteCall) -> Assignments | None:
        """Make ``call``: the model's assignments (``None``: failed or did not parse)."""
        return await self._caller(spec)(call)

    def _caller(self, spec: RouteSpec) -> ModuleRouteCaller:
        if spec.key not in self._callers:
            module = SampleRouter()
            module.load_state(spec.router_state)
            self._callers[spec.key] = ModuleRouteCaller(module, self.gateway, Task.model_validate(spec.task))
        return self._callers[spec.key]


class RemoteRouteCaller:
    """Sends routing calls to the workers (``actors``: LeafWorker handles); books each on the driver's gateway."""

    def __init__(self, actors: list[Any], spec: RouteSpec, gateway: Gateway) -> None:
        """Wire a caller; see the class docstring."""
        self.actors, self.spec, self.gateway = actors, spec, gateway
        self.load = [0] * len(actors)
        """Routing calls outstanding per worker."""

    async def __call__(self, call: RouteCall) -> Assignments | None:
        """One routing call on a worker (raises :class:`ProviderError` when the worker's gateway stopped the run)."""
        outcome = await booked(self.gateway, lambda: self._on_a_worker(call))
        return outcome.assignments

    async def _on_a_worker(self, call: RouteCall) -> RouteOutcome:
        """The outcome from the least loaded worker; a worker that dies passes the call to another one."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        died: list[int] = []  # the workers that died on this call (one may die twice)
        while True:
            worker = min(range(len(self.actors)), key=lambda i: (died.count(i), self.load[i]))
            self.load[worker] += 1
            try:
                outcome: RouteOutcome = await self.actors[worker].route.remote(self.spec, call)
                return outcome
            except (ActorDiedError, ActorUnavailableError, RayActorError) as lost:
                died.append(worker)
                if len(died) >= MAX_LOST:
                    raise ProviderError(
                        f"the Ray workers making the routing call of node {call.node_id} died {len(died)} times "
                        f"({type(lost).__name__}); check the workers' logs (ray logs), then re-run the same "
                        "command to resume") from None
            finally:
                self.load[worker] -= 1
