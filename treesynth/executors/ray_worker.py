"""What runs inside one Ray worker: a :class:`LeafWorker` actor builds its own LMs, gateway and DSPy program
from plain data (the run's config, a :class:`SourceSpec`) -- never a pickled LM, cache or lock -- and makes the
leaf calls it is sent, streaming each :class:`Outcome` back as soon as it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from treesynth.config import RunConfig
from treesynth.errors import ProviderError
from treesynth.models import Task
from treesynth.providers import CallRecord, Gateway, RetryPolicy, StructuredOutputs, make_role_lms
from treesynth.providers.adapter import MemoJSONAdapter
from treesynth.providers.context import lm_context
from treesynth.providers.limits import Lease, Report, SharedLimiter
from treesynth.store import Candidate
from treesynth.synthesis.caller import LeafCall, SourceCaller, SynthesisSource
from treesynth.synthesis.leaf import LeafSynthesizer

if TYPE_CHECKING:
    from treesynth.executors.ray_routing import RouteOutcome, RouteRunner, RouteSpec
    from treesynth.tree.routing import RouteCall

T = TypeVar("T")
_BOOKED: contextvars.ContextVar[list[CallRecord]] = contextvars.ContextVar("treesynth_worker_booked")


@dataclass(frozen=True)
class SourceSpec:
    """A leaf source as plain data: the task, the leaf module's (compiled) state and the ledger stage."""

    key: str
    """Names the spec (a worker builds each spec's caller once)."""
    task: dict[str, Any]
    leaf_state: dict[str, Any]
    stage: str


@dataclass(frozen=True)
class Outcome:
    """One leaf call's result: the call's ledger record, its candidates (``None``: failed or did not parse) and
    the message of a provider error that must stop the run."""

    record: CallRecord | None
    candidates: list[Candidate] | None = None
    stop: str | None = None

    def wire(self) -> Wire:
        """The outcome as plain tuples: unpickling a slotted dataclass costs a ``dataclasses.fields`` call per
        object, which made deserialization the driver's largest cost."""
        record = None if self.record is None else tuple(getattr(self.record, name) for name in CallRecord.__slots__)
        return record, self.candidates, self.stop

    @classmethod
    def from_wire(cls, wire: Wire) -> Outcome:
        """The outcome :meth:`wire` made."""
        record, candidates, stop = wire
        return cls(None if record is None else CallRecord(*record), candidates, stop)


Wire = tuple[tuple[Any, ...] | None, list[Candidate] | None, str | None]
"""An :class:`Outcome` on its way from a worker to the driver."""


class LeafWorker:
    """A Ray actor's state (wrapped with ``ray.remote`` by the driver): see the module docstring.

    Args:
        config: The run's configuration (``RunConfig.model_dump(mode="json")``).
        board: The name of the run's limits board (a named actor in ``namespace``).
        namespace: The Ray namespace of the board.
        name: This worker's name on the board.
    """

    def __init__(self, config: dict[str, Any], board: str, namespace: str, name: str) -> None:
        """Build the LMs and the gateway in this process (plain arguments: a restart rebuilds it from them)."""
        import ray

        run = RunConfig.model_validate(config)
        self._structured = StructuredOutputs.from_config(run.model)
        self._adapter = MemoJSONAdapter(self._structured)  # one per worker: its formatting memo serves every call
        self._callers: dict[str, SourceCaller] = {}
        shared = board_limiters(ray.get_actor(board, namespace=namespace), name, run.concurrency)
        self._gateway = Gateway(make_role_lms(run.model), concurrency=run.concurrency,
                                policy=RetryPolicy.for_model(run.model), structured=self._structured,
                                on_call=_book, limiters=shared)
        self._routes: RouteRunner | None = None
        """Balance's routing calls (made on first use)."""

    async def warm_up(self) -> None:
        """Pay litellm's one-time set-up (lazy imports, price map, client) now, with a mocked answer that never
        leaves the process, rather than inside the first leaf call's time."""
        import litellm

        for lm in {id(lm): lm for lm in self._gateway.lms.values()}.values():
            if lm.model.startswith(("local/", "test/")):
                continue
            with contextlib.suppress(Exception):  # a warm-up only: the real calls report real errors
                await litellm.acompletion(model=lm.model, messages=[{"role": "user", "content": "warm-up"}],
                                          mock_response="{}", api_base=lm.kwargs.get("api_base"))

    def where(self) -> tuple[int, str]:
        """This worker's process id and Ray node id."""
        import ray

        return os.getpid(), str(ray.get_runtime_context().get_node_id())

    async def run(self, spec: SourceSpec, calls: list[LeafCall]) -> AsyncIterator[tuple[int, Wire]]:
        """Make ``calls`` concurrently; yield ``(index in calls, outcome.wire())`` as each finishes."""
        caller = self._caller(spec)
        pending = [asyncio.ensure_future(self._one(caller, index, call)) for index, call in enumerate(calls)]
        try:
            for finished in asyncio.as_completed(pending):
                index, outcome = await finished
                yield index, outcome.wire()
        finally:
            for task in pending:
                task.cancel()

    async def route(self, spec: RouteSpec, call: RouteCall) -> RouteOutcome:
        """Make one routing call (a balance batch) on this worker's gateway: see
        :mod:`treesynth.executors.ray_routing`."""
        from treesynth.executors.ray_routing import RouteOutcome, RouteRunner

        routes = self._routes = self._routes or RouteRunner(self._gateway)
        record, assignments, stop = await self.made_here(lambda: routes(spec, call))
        return RouteOutcome(record, assignments, stop)

    async def made_here(self, make: Callable[[], Awaitable[T]]) -> tuple[CallRecord | None, T | None, str | None]:
        """Run one call of this worker's gateway under the run's DSPy settings: the call's ledger record (which
        goes back to the driver), its result, and the message of a provider error that must stop the run."""
        booked: list[CallRecord] = []
        token = _BOOKED.set(booked)
        try:
            with lm_context(self._structured, adapter=self._adapter):
                result = await make()
            return booked[-1] if booked else None, result, None
        except ProviderError as stop:
            return booked[-1] if booked else None, None, str(stop)
        finally:
            _BOOKED.reset(token)

    async def _one(self, caller: SourceCaller, index: int, call: LeafCall) -> tuple[int, Outcome]:
        record, candidates, stop = await self.made_here(lambda: caller(call))
        return index, Outcome(record, candidates, stop)

    def _caller(self, spec: SourceSpec) -> SourceCaller:
        if spec.key not in self._callers:
            task = Task.model_validate(spec.task)
            module = LeafSynthesizer()
            module.load_state(spec.leaf_state)
            self._callers[spec.key] = SourceCaller(SynthesisSource(module, task), self._gateway, task, spec.stage)
        return self._callers[spec.key]


def board_limiters(board: Any, participant: str, maximum: int) -> Callable[[str], SharedLimiter]:
    """Makes ``participant``'s shared limiter of each provider model, leased from the limits ``board`` (the named
    actor's handle) -- for the driver's gateway and for each worker's."""
    async def sync(report: Report) -> Lease:
        lease: Lease = await board.sync.remote(report)
        return lease

    def shared(key: str) -> SharedLimiter:
        return SharedLimiter(sync, participant=participant, key=key, maximum=maximum)

    return shared


def _book(record: CallRecord) -> None:
    """The worker gateway's ledger: the record goes back to the driver with the call's outcome."""
    booked = _BOOKED.get(None)
    if booked is not None:
        booked.append(record)
