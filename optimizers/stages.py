"""Synchronous DSPy views of the program's async modules, for optimizers.

DSPy optimizers call ``module(**example.inputs())`` from worker threads. A :class:`NodeStage` holds the
program's *own* module object (so its predictor is found under the same name, e.g. ``leaf.synthesize``,
and compiled instructions can be copied back onto the program by name), runs the module's ``aforward``
through a fresh :class:`~treesynth.providers.Gateway` (retries, timeouts, per-call seed and temperature,
one ledger record per call) and exposes a sync ``forward`` that runs that coroutine to completion.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dspy

from treesynth.config import Role
from treesynth.program import TreeSynthProgram
from treesynth.providers import CallRecord, Gateway, RetryPolicy, StructuredOutputs

T = TypeVar("T")

COMPILABLE: tuple[Role, ...] = ("criterion", "coverage", "leaf")
"""Modules with a per-node objective; each is a :class:`TreeSynthProgram` attribute of the same name."""


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``make()`` to completion from sync code.

    Uses ``asyncio.run`` when no loop runs in this thread; inside a running loop (a notebook, an async
    caller) it runs in a fresh loop on a helper thread, with the caller's context variables.
    """
    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, main()).result()


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


@dataclass(frozen=True)
class StageRuntime:
    """What a stage needs to make calls: the LM per role, the retry policy, the call tally and the run's
    structured-output state (shared by every call, so a format fallback is remembered across them)."""

    lms: dict[Role, dspy.LM]
    policy: RetryPolicy
    tally: CallTally
    structured: StructuredOutputs | None = None

    def gateway(self) -> Gateway:
        """A gateway for one call (gateways hold asyncio state, and each sync call runs its own loop)."""
        return Gateway(self.lms, concurrency=1, on_call=self.tally.record, policy=self.policy,
                       structured=self.structured)


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

        gateway = self._runtime.value.gateway()
        pred = await gateway.call(self.role, stage=f"compile:{self.role}", node_id=node_id, seed=seed, fn=call)
        return pred if pred is not None else dspy.Prediction()

    def forward(self, **inputs: Any) -> dspy.Prediction:
        """Sync facade over :meth:`aforward` (what DSPy optimizers call)."""
        return run_sync(lambda: self.aforward(**inputs))


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
