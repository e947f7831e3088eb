"""Executors: where a run's leaf calls are made.

An :class:`Executor` is the seam between the driver (tree building, the allocator, the one
:class:`~treesynth.store.RunStore`) and the processes that make leaf calls (and balance's routing calls:
:class:`~treesynth.tree.routing.RouteCall` items, the same way). ``local`` (the default) makes them
in this process; ``ray`` fans serializable :class:`~treesynth.synthesis.caller.LeafCall` work items out to Ray
actors and streams the candidates back, so the store -- keyed by ``(leaf_id, call_index)`` -- is written by
the driver alone, once per key, whatever Ray retries.

:func:`open_executor` is the one way to get one; :class:`~treesynth.kernel.RunSession` opens it for every run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from treesynth.config import RunConfig
from treesynth.executors.local import LocalExecutor
from treesynth.models import Task
from treesynth.providers.gateway import Gateway
from treesynth.providers.limiter import Limiter
from treesynth.synthesis.caller import LeafCaller, SampleSource
from treesynth.tree.routing import RouteCaller, SampleRouter


class Executor(Protocol):
    """Makes a run's leaf calls (see the module docstring)."""

    kind: str
    """``local`` or ``ray``."""

    def limiters(self) -> Callable[[str], Limiter] | None:
        """The limiters the driver's gateway must use (shared with the workers), or ``None`` for its own."""
        ...

    def leaf_caller(self, source: SampleSource, gateway: Gateway, task: Task, stage: str) -> LeafCaller:
        """A caller for ``source``'s leaf calls, booked on ``gateway`` (the driver's: ledger and caps)."""
        ...

    def route_caller(self, module: SampleRouter, gateway: Gateway, task: Task) -> RouteCaller:
        """A caller for ``module``'s routing calls (balance's batches), booked on ``gateway`` like leaf calls."""
        ...


@asynccontextmanager
async def open_executor(config: RunConfig) -> AsyncIterator[Executor]:
    """The executor ``config.executor`` names, started for the ``async with`` block and stopped after it."""
    if config.executor.kind == "local":
        yield LocalExecutor()
        return
    from treesynth.executors.ray_pool import RayExecutor

    executor = RayExecutor(config)
    try:
        await executor.start()
        yield executor
    finally:
        await executor.aclose()


__all__ = ["Executor", "LocalExecutor", "open_executor"]
