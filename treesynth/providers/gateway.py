"""Every LLM call goes through one :class:`Gateway`: bounded concurrency, per-role LMs, per-call seeds,
a ledger record per call, parse-failure handling and a circuit breaker on sustained provider failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dspy
from dspy.utils.exceptions import AdapterParseError

from treesynth.config import Role
from treesynth.errors import ProviderError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One LLM call as recorded in the run's ledger."""

    stage: str
    model: str
    node_id: str
    ok: bool
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    seconds: float


CallFn = Callable[[dspy.LM, dict[str, Any]], Awaitable[T]]


class Gateway:
    """Runs LLM calls for the pipeline.

    Args:
        lms: The LM serving each role.
        concurrency: Most calls in flight at once.
        on_call: Receives a :class:`CallRecord` after every call (the run store's ledger).
        failure_limit: Consecutive provider failures after which the run stops with :class:`ProviderError`.
    """

    def __init__(self, lms: dict[Role, dspy.LM], *, concurrency: int, on_call: Callable[[CallRecord], None],
                 failure_limit: int = 8) -> None:
        """Create a gateway; see the class docstring."""
        self.lms = lms
        self._slots = asyncio.Semaphore(concurrency)
        self._on_call = on_call
        self._failure_limit = failure_limit
        self._consecutive_failures = 0

    async def call(self, role: Role, *, stage: str, node_id: str, seed: int, fn: CallFn[T]) -> T | None:
        """Run ``fn(lm, config)`` for ``role`` with a per-call seed; ``None`` when the output did not parse.

        ``config`` carries a distinct ``rollout_id`` and ``seed`` so that no two draws collapse into one
        cache entry. Provider failures (after DSPy's own retries) are recorded and return ``None`` until
        ``failure_limit`` consecutive failures, which raise :class:`ProviderError`.
        """
        lm = self.lms[role]
        config = {"rollout_id": seed, "seed": seed, "temperature": lm.kwargs.get("temperature", 1.0)}
        start = time.perf_counter()
        error: str | None = None
        result: T | None = None
        async with self._slots:
            try:
                result = await fn(lm, config)
            except AdapterParseError:
                error = "parse"
            except (ProviderError, asyncio.CancelledError):
                raise
            except Exception as exc:
                error = f"provider: {type(exc).__name__}: {str(exc)[:200]}"
        usage = _usage(result)
        self._on_call(CallRecord(stage, lm.model, node_id, error is None, error, usage[0], usage[1],
                                 time.perf_counter() - start))
        self._track_failures(error, lm.model)
        return result

    def _track_failures(self, error: str | None, model: str) -> None:
        if error is None or error == "parse":
            self._consecutive_failures = 0
            return
        self._consecutive_failures += 1
        if self._consecutive_failures >= self._failure_limit:
            raise ProviderError(
                f"{self._consecutive_failures} consecutive calls to {model} failed (last: {error}); "
                "check the model, key and --api-base, then re-run the same command to resume"
            )


def _usage(result: object) -> tuple[int, int]:
    getter = getattr(result, "get_lm_usage", None)
    usage = getter() if callable(getter) else None
    prompt = completion = 0
    for entry in (usage or {}).values():
        prompt += int(entry.get("prompt_tokens") or 0)
        completion += int(entry.get("completion_tokens") or 0)
    return prompt, completion
