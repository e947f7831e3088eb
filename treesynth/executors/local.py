"""The local executor: every leaf (and routing) call in this process, through the run's gateway."""

from __future__ import annotations

from collections.abc import Callable

from treesynth.models import Task
from treesynth.providers.gateway import Gateway
from treesynth.providers.limiter import Limiter
from treesynth.synthesis.caller import LeafCaller, SampleSource, SourceCaller
from treesynth.tree.routing import ModuleRouteCaller, RouteCaller, SampleRouter


class LocalExecutor:
    """Makes leaf calls in the driver's process (the default executor)."""

    kind = "local"

    def limiters(self) -> Callable[[str], Limiter] | None:
        """None: the gateway keeps its own in-process limiter."""
        return None

    def leaf_caller(self, source: SampleSource, gateway: Gateway, task: Task, stage: str) -> LeafCaller:
        """A :class:`~treesynth.synthesis.caller.SourceCaller` on the driver's gateway."""
        return SourceCaller(source, gateway, task, stage)

    def route_caller(self, module: SampleRouter, gateway: Gateway, task: Task) -> RouteCaller:
        """A :class:`~treesynth.tree.routing.ModuleRouteCaller` on the driver's gateway."""
        return ModuleRouteCaller(module, gateway, task)
