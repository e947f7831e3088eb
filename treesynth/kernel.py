"""The run kernel: one store, one gateway, one DSPy context and one typed ``run.json`` per run.

Every kind of run (``run``, ``balance``, a baseline, a tune trial) is a small program that opens a
:class:`RunSession` and makes its calls through ``session.gateway``::

    async with RunSession.open(out, identity, config, kind="run") as session:
        ...                                   # calls via session.gateway, writes via session.store
        session.write_record(session.record(status="complete", counts=Counts(...)))

The session owns the wiring the entry points used to repeat: it opens (and closes) the resumable
:class:`~treesynth.store.RunStore`, records every call in its ledger, builds one
:class:`~treesynth.providers.Gateway` (so the circuit breaker, the adaptive limit and an in-process
engine's queue see the whole run), enters :func:`~treesynth.providers.context.lm_context` once with the
run's structured-output state, and writes ``run.json`` as a validated :class:`~treesynth.record.RunRecord`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from treesynth.config import ModelConfig, Role, RunConfig
from treesynth.errors import CAP_RESUME_HINT, RESUME_HINT
from treesynth.executors import Executor, open_executor
from treesynth.models import Task
from treesynth.providers import CallRecord, Gateway, RetryPolicy, StructuredOutputs, make_role_lms
from treesynth.providers.budget import SpendingCap
from treesynth.providers.context import lm_context
from treesynth.providers.limiter import Limiter
from treesynth.record import Counts, Ledger, Reused, RunKind, RunRecord, RunStatus, Timings, write_record
from treesynth.rundir import disk_full_as_error
from treesynth.store import RunStore
from treesynth.summary import priced_ledger, versions
from treesynth.synthesis.caller import LeafCaller, SampleSource
from treesynth.tree.routing import RouteCaller, SampleRouter


def retry_policy(model: ModelConfig) -> RetryPolicy:
    """The gateway's retry policy for a model configuration."""
    return RetryPolicy.for_model(model)


def spending_cap(config: RunConfig, ledger: dict[str, Any] | None = None) -> SpendingCap:
    """The caps of ``config.budget``, starting from what ``ledger`` (a resumed run's priced ledger) has spent."""
    ledger = ledger or {}
    return SpendingCap(max_calls=config.budget.max_calls, max_cost_usd=config.budget.max_cost_usd,
                       calls=int(ledger.get("calls") or 0), cost_usd=float(ledger.get("cost_usd") or 0.0))


def build_gateway(config: RunConfig, lms: dict[Role, dspy.LM], structured: StructuredOutputs | None,
                  on_call: Callable[[CallRecord], None], cap: SpendingCap | None = None,
                  limiters: Callable[[str], Limiter] | None = None) -> Gateway:
    """The one gateway of a run (or of a compile): concurrency, retry policy, dialect state and spending caps of
    ``config`` (``cap``: caps that already count earlier spending; default: ``config``'s from zero; ``limiters``:
    the executor's shared limiters, default the gateway's own)."""
    return Gateway(lms, concurrency=config.concurrency, policy=retry_policy(config.model), structured=structured,
                   on_call=on_call, cap=cap or spending_cap(config), limiters=limiters)


@dataclass
class RunSession:
    """An open run: its store, its gateway and the record it will write. Build it with :meth:`open`."""

    kind: RunKind
    config: RunConfig
    store: RunStore
    gateway: Gateway
    structured: StructuredOutputs
    executor: Executor
    """Where leaf calls run (``config.executor``): this process, or Ray workers."""
    started: float = field(default_factory=time.time)
    prior_seconds: float = 0.0
    """Wall time of the run's earlier sessions (a resumed run)."""
    sessions: int = 1
    """Sessions that worked on this run, this one included."""
    reused: Reused | None = None
    """What earlier sessions left in the store (``None``: this is the run's first session with work)."""

    @classmethod
    @asynccontextmanager
    async def open(cls, out: Path, identity: dict[str, Any], config: RunConfig, *, kind: RunKind,
                   lms: dict[Role, dspy.LM] | None = None,
                   on_call: Callable[[CallRecord], None] | None = None) -> AsyncIterator[RunSession]:
        """Open (or resume) the run in ``out`` for the duration of the ``async with`` block.

        ``identity`` is what must match to resume (task, shape, seed...). ``lms`` default to the LMs of
        ``config.model``; ``on_call`` sees every call after the store's ledger has recorded it.
        """
        lms = lms or make_role_lms(config.model)  # a bad model string fails before the run directory exists
        structured = StructuredOutputs.from_config(config.model)  # this run's dialect per model
        async with open_executor(config) as executor:  # a cluster that cannot be reached fails before the directory
            with disk_full_as_error(Path(out)):  # a full disk, at any write of the session, is one line naming the fix
                async with cls._opened(RunStore.open(Path(out), identity), config, kind=kind, lms=lms,
                                       structured=structured, on_call=on_call, executor=executor) as session:
                    yield session

    @classmethod
    @asynccontextmanager
    async def _opened(cls, store: RunStore, config: RunConfig, *, kind: RunKind, lms: dict[Role, dspy.LM],
                      structured: StructuredOutputs, on_call: Callable[[CallRecord], None] | None,
                      executor: Executor) -> AsyncIterator[RunSession]:
        """The session on an open ``store`` (closed, and its lock released, when the block ends)."""
        gateway: Gateway | None = None
        try:
            def record(rec: CallRecord) -> None:
                store.record_call(rec)
                if on_call is not None:
                    on_call(rec)

            cap = spending_cap(config, priced_ledger(store) if config.budget.max_calls or config.budget.max_cost_usd
                               else None)
            gateway = build_gateway(config, lms, structured, record, cap, executor.limiters())
            reused = _reused(store)
            sessions = int(store.get_meta("sessions") or (reused is not None)) + 1  # a store from before counting
            store.set_meta("sessions", sessions)
            with lm_context(structured):
                yield cls(kind=kind, config=config, store=store, gateway=gateway, structured=structured,
                          executor=executor, prior_seconds=float(store.get_meta("elapsed_seconds") or 0.0),
                          sessions=sessions, reused=reused)
        finally:
            if gateway is not None:
                await gateway.aclose()
            store.close()

    def leaf_caller(self, source: SampleSource, task: Task, stage: str = "leaf") -> LeafCaller:
        """A caller making ``source``'s leaf calls on this run's executor, booked on its gateway."""
        return self.executor.leaf_caller(source, self.gateway, task, stage)

    def route_caller(self, module: SampleRouter, task: Task) -> RouteCaller:
        """A caller making ``module``'s routing calls (balance) on this run's executor, booked on its gateway."""
        return self.executor.route_caller(module, self.gateway, task)

    def elapsed(self) -> Timings:
        """This session's wall time and the run's total over every session (persisted in the store)."""
        now = time.time() - self.started
        return Timings(seconds_this_session=round(now, 3), seconds_total=round(self.prior_seconds + now, 3))

    def record(self, *, status: RunStatus, counts: Counts, task: Task | None = None, error: str | None = None,
               **fields: Any) -> RunRecord:
        """The validated record of this run so far (``fields``: further :class:`RunRecord` fields)."""
        resume = None if status in ("complete", "tree") else RESUME_HINT
        capped = self.gateway.cap.stopped
        if capped is not None and error == capped and status != "complete":
            status, resume = "partial", CAP_RESUME_HINT  # nothing failed: a raised cap continues the run
        return RunRecord(kind=self.kind, status=status, error=error, resume=resume,
                         task=task.model_dump(mode="json") if task is not None else None, counts=counts,
                         llm=Ledger.model_validate(priced_ledger(self.store)), timings=self.elapsed(),
                         sessions=self.sessions, reused=self.reused, config=self.config.model_dump(mode="json"),
                         versions=versions(), **fields)

    def write_record(self, record: RunRecord) -> dict[str, Any]:
        """Write ``run.json``; persist this session's time into the run's total, and its status and target."""
        self.store.set_meta("elapsed_seconds", record.timings.seconds_total)
        self.store.set_meta("last_record", {"status": record.status, "target": record.counts.target})
        return write_record(self.store.out, record)


def _reused(store: RunStore) -> Reused | None:
    """The work of the run's earlier sessions, or ``None`` when the store holds none."""
    nodes, known = store.node_stats()
    samples, calls = store.sample_total(), store.ledger()["calls"]
    if not (nodes or samples or calls):
        return None
    last = store.get_meta("last_record") or {}
    return Reused(nodes=nodes, known_nodes=known, samples=samples, calls=calls, status=last.get("status"),
                  target=last.get("target"))
