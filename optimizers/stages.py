"""Synchronous DSPy views of the program's async modules, for optimizers.

DSPy optimizers call ``module(**example.inputs())`` from worker threads. A :class:`NodeStage` holds the
program's *own* module object (so its predictor is found under the same name, e.g. ``leaf.synthesize``,
and compiled instructions can be copied back onto the program by name) and runs the module's ``aforward``
through the compile's **one** :class:`~treesynth.providers.Gateway` (retries, timeouts, per-call seed and
temperature, one ledger record per call, and a circuit breaker that sees every call). Its sync ``forward``
hands the coroutine to the runtime's :class:`~treesynth.aio.LoopThread`, where that gateway lives.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import dspy

from treesynth.aio import LoopThread
from treesynth.config import Role
from treesynth.errors import ProviderError
from treesynth.program import TreeSynthProgram
from treesynth.providers import CallRecord, Gateway, RetryPolicy, StructuredOutputs
from treesynth.providers.budget import SpendingCap

T = TypeVar("T")

COMPILABLE: tuple[Role, ...] = ("criterion", "coverage", "leaf")
"""Modules with a per-node objective; each is a :class:`TreeSynthProgram` attribute of the same name."""


class Shared(Generic[T]):
    """A reference that module deep copies share: optimizers copy modules, never their LMs or tallies."""

    def __init__(self, value: T) -> None:
        """Wrap ``value``."""
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> Shared[T]:
        """Copies share the value."""
        return self


class CallTally:
    """Thread-safe totals of the LLM calls made through stages (the gateway's ledger records)."""

    def __init__(self) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.calls = 0
        self.failed = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def record(self, rec: CallRecord) -> None:
        """Add one call."""
        with self._lock:
            self.calls += 1
            self.failed += 0 if rec.ok else 1
            self.prompt_tokens += rec.prompt_tokens
            self.completion_tokens += rec.completion_tokens

    def snapshot(self) -> dict[str, int]:
        """The totals so far."""
        with self._lock:
            return {"calls": self.calls, "failed": self.failed, "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens}


@dataclass
class StageRuntime:
    """What stages need to make calls: the LM per role, the retry policy, the call tally, the run's
    structured-output state, and the one loop and gateway every call of the compile goes through.

    Use as a context manager: entering starts the loop thread, leaving stops it. Sharing one gateway
    means the circuit breaker sees consecutive failures across calls (a failing provider stops the
    compile) and the adaptive limit and in-process engine queue persist between calls.
    """

    lms: dict[Role, dspy.LM]
    policy: RetryPolicy
    tally: CallTally
    structured: StructuredOutputs | None = None
    concurrency: int = 1
    cap: SpendingCap | None = None
    """The compile's spending caps (``None``: none)."""
    loop: LoopThread = field(default_factory=lambda: LoopThread("treesynth-compile"))
    gateway: Gateway = field(init=False)
    stopped: ProviderError | None = field(default=None, init=False)
    """The error that stopped the gateway (breaker tripped, provider unreachable...); later calls re-raise it."""

    def __post_init__(self) -> None:
        """Build the gateway (its asyncio state binds to the loop on first use)."""
        self.gateway = Gateway(self.lms, concurrency=self.concurrency, on_call=self.tally.record,
                               policy=self.policy, structured=self.structured, cap=self.cap)

    def __enter__(self) -> StageRuntime:
        """Start the loop thread."""
        self.loop.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop the loop thread."""
        self.loop.__exit__(*exc_info)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the runtime's loop (from any thread but the loop's) and return its result.

        Once a call has stopped the gateway (a :class:`ProviderError`), every later call raises that error
        without reaching the provider, so an optimizer that swallows errors still stops calling.
        """
        if self.stopped is not None:
            coroutine.close()
            raise self.stopped
        try:
            return self.loop.run(coroutine)
        except ProviderError as exc:
            self.stopped = self.stopped or exc
            raise

    def raise_if_stopped(self) -> None:
        """Raise the error that stopped the gateway, if any (optimizers may have swallowed it)."""
        if self.stopped is not None:
            raise self.stopped


class NodeStage(dspy.Module):
    """One compilable module of ``program`` as a sync DSPy module over node examples.

    Inputs are the module's own inputs plus ``seed`` (each node example's fixed seed and rollout id, so
    before/after comparisons differ only by the instruction) and an optional ``node_id`` for the ledger.
    A call that fails or does not parse returns a prediction without the output field (objectives score
    it 0).
    """

    def __init__(self, program: TreeSynthProgram, role: Role, runtime: StageRuntime) -> None:
        """View ``program``'s ``role`` module (the same object, not a copy)."""
        super().__init__()
        if role not in COMPILABLE:
            raise ValueError(f"no compilable module {role!r}; choose from {', '.join(COMPILABLE)}")
        self.role: Role = role
        setattr(self, role, getattr(program, role))
        self._runtime = Shared(runtime)

    @property
    def module(self) -> dspy.Module:
        """The wrapped program module."""
        module: dspy.Module = getattr(self, self.role)
        return module

    async def aforward(self, seed: int, node_id: str = "", **inputs: Any) -> dspy.Prediction:
        """Call the module once through a gateway."""
        module = self.module

        async def call(lm: dspy.LM, config: dict[str, Any]) -> Any:
            return await module.acall(**inputs, lm=lm, config=config)

        gateway = self._runtime.value.gateway
        pred = await gateway.call(self.role, stage=f"compile:{self.role}", node_id=node_id, seed=seed, fn=call)
        return pred if pred is not None else dspy.Prediction()

    def forward(self, **inputs: Any) -> dspy.Prediction:
        """Sync facade over :meth:`aforward` (what DSPy optimizers call)."""
        return self._runtime.value.run(self.aforward(**inputs))


def copy_compiled(compiled: dspy.Module, program: TreeSynthProgram) -> list[str]:
    """Copy every predictor's state (instructions, demos) of ``compiled`` onto ``program`` by name.

    Returns the names whose instructions changed.
    """
    targets = dict(program.named_predictors())
    changed: list[str] = []
    for name, predictor in compiled.named_predictors():
        target = targets[name]
        if target.signature.instructions != predictor.signature.instructions:
            changed.append(name)
        target.load_state(predictor.dump_state())
    return changed
