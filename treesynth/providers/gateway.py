"""Every LLM call goes through one :class:`Gateway`.

It owns: adaptive bounded concurrency (:class:`AdaptiveLimiter`), per-call timeouts, retries with
exponential backoff that honour ``Retry-After`` and release the concurrency slot while sleeping,
per-call seeds (distinct ``rollout_id``/``seed`` so no two draws collapse in DSPy's cache), one ledger
record per call, parse-failure handling, and a circuit breaker that stops the run cleanly (as
:class:`ProviderError`) after sustained failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dspy
from dspy.utils.exceptions import (
    AdapterParseError,
    LMAuthError,
    LMRateLimitError,
    LMTransportError,
    is_retryable_lm_error,
)

from treesynth.config import Role, is_local_model
from treesynth.errors import ProviderError
from treesynth.providers.limiter import AdaptiveLimiter

T = TypeVar("T")
MAX_BACKOFF_SECONDS = 60.0
_UNREACHABLE_MARKERS = ("Connection error", "Connection refused", "Name or service not known", "nodename nor servname")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One LLM call (with its retries) as recorded in the run's ledger."""

    stage: str
    model: str
    node_id: str
    ok: bool
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    retries: int = 0
    cached: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the gateway tries before a call counts as failed."""

    attempts: int = 6
    timeout: float = 120.0
    failure_limit: int = 8
    base_delay: float = 1.0


CallFn = Callable[[dspy.LM, dict[str, Any]], Awaitable[T]]


@dataclass
class _Attempt:
    result: Any = None
    error: str | None = None
    retry_after: float | None = None
    overloaded: bool = False
    retryable: bool = False
    unreachable: bool = False


class Gateway:
    """Runs the pipeline's LLM calls.

    Args:
        lms: The LM serving each role (built with DSPy retries off: the gateway retries).
        concurrency: Most calls in flight at once (the adaptive limit's ceiling).
        on_call: Receives a :class:`CallRecord` after every call (the run store's ledger).
        policy: Attempts, timeout, circuit-breaker threshold.
    """

    def __init__(self, lms: dict[Role, dspy.LM], *, concurrency: int, on_call: Callable[[CallRecord], None],
                 policy: RetryPolicy | None = None) -> None:
        """Create a gateway; see the class docstring."""
        self.lms = lms
        self.limiter = AdaptiveLimiter(concurrency)
        self.policy = policy or RetryPolicy()
        self._on_call = on_call
        self._consecutive_failures = 0
        self._reached = False
        self._api_base = next((lm.kwargs.get("api_base") for lm in lms.values() if lm.kwargs.get("api_base")),
                              "provider default")
        self._serial: dict[str, asyncio.Semaphore] = {}

    async def call(self, role: Role, *, stage: str, node_id: str, seed: int, fn: CallFn[T],
                   required: bool = False) -> T | None:
        """Run ``fn(lm, config)`` for ``role``; ``None`` when the output did not parse or the call failed.

        ``config`` carries ``rollout_id == seed`` and the role's temperature. Retryable provider errors
        (rate limits, overload, server errors, timeouts, transport) are retried up to
        ``policy.attempts`` times with the slot released while waiting. :class:`ProviderError` stops the
        run (resumably) when: authentication fails; the provider was never reached (fail fast on a wrong
        ``--api-base``); a ``required`` call fails for a provider reason (tree building must not be
        degraded by an outage); or ``policy.failure_limit`` consecutive attempts fail for reasons other
        than rate limits (the circuit breaker).
        """
        lm = self.lms[role]
        config = {"rollout_id": seed, "seed": seed, "temperature": lm.kwargs.get("temperature", 1.0)}
        jitter = random.Random(seed)
        start = time.perf_counter()
        attempt = _Attempt()
        retries = 0
        for index in range(self.policy.attempts):
            attempt = await self._attempt(lm, config, fn)
            try:
                self._track_failures(attempt, lm.model)
            except ProviderError:  # breaker tripped or host unreachable: the ledger still gets this call
                self._record(stage, lm.model, node_id, attempt, start, retries)
                raise
            if not attempt.retryable or index == self.policy.attempts - 1:
                break
            retries += 1
            await asyncio.sleep(self._delay(attempt, index, jitter))  # the slot is free while we sleep
        self._record(stage, lm.model, node_id, attempt, start, retries)
        if required and attempt.error not in (None, "parse"):
            raise ProviderError(f"the {stage} call for node {node_id} failed after {retries + 1} attempts "
                                f"({attempt.error}); re-run the same command to resume")
        return attempt.result if attempt.error is None else None

    def _record(self, stage: str, model: str, node_id: str, attempt: _Attempt, start: float, retries: int) -> None:
        """Hand one call (its last attempt's outcome, usage and total time) to the ledger."""
        prompt, completion = _usage(attempt.result)
        cached = attempt.error is None and prompt == completion == 0
        self._on_call(CallRecord(stage, model, node_id, attempt.error is None, attempt.error, prompt, completion,
                                 time.perf_counter() - start, retries, cached))

    async def _attempt(self, lm: dspy.LM, config: dict[str, Any], fn: CallFn[Any]) -> _Attempt:
        await self.limiter.acquire()
        outcome = _Attempt()
        try:
            async with self._engine_turn(lm):  # queueing for an in-process engine is not the model's time
                outcome.result = await asyncio.wait_for(fn(lm, config), self.policy.timeout)
        except AdapterParseError:
            outcome.error = "parse"
        except TimeoutError:
            outcome.error, outcome.retryable, outcome.overloaded = "timeout", True, True
        except LMAuthError as exc:
            raise ProviderError(f"authentication failed for {lm.model} ({str(exc)[:120]}); set the provider's "
                                "API key in the environment (e.g. OPENAI_API_KEY) and re-run to resume") from None
        except Exception as exc:
            outcome.error = f"{type(exc).__name__}: {str(exc)[:200]}"
            outcome.retryable = is_retryable_lm_error(exc)
            outcome.unreachable = isinstance(exc, LMTransportError) or any(
                marker in outcome.error for marker in _UNREACHABLE_MARKERS)
            outcome.retry_after = getattr(exc, "retry_after", None)
            outcome.overloaded = isinstance(exc, LMRateLimitError) or getattr(exc, "status", None) in (429, 503, 529)
        finally:
            await self.limiter.release(overloaded=outcome.overloaded)
        return outcome

    def _engine_turn(self, lm: dspy.LM) -> contextlib.AbstractAsyncContextManager[Any]:
        """A turn on ``lm``'s engine: in-process models generate one call at a time, so calls queue here,
        before the timeout starts, instead of inside the engine where waiting would count as a slow call."""
        model = str(lm.model)
        if not is_local_model(model):
            return contextlib.nullcontext()
        return self._serial.setdefault(model, asyncio.Semaphore(1))

    def _delay(self, attempt: _Attempt, index: int, jitter: random.Random) -> float:
        if attempt.retry_after is not None and attempt.retry_after >= 0:
            return min(float(attempt.retry_after), MAX_BACKOFF_SECONDS)
        backoff: float = min(self.policy.base_delay * 2**index, MAX_BACKOFF_SECONDS)
        return backoff * jitter.uniform(0.5, 1.5)

    def _track_failures(self, attempt: _Attempt, model: str) -> None:
        if attempt.error is None or attempt.error == "parse":
            self._consecutive_failures = 0
            self._reached = True
            return
        if attempt.unreachable and not self._reached:
            raise ProviderError(f"cannot reach {model} ({attempt.error}); check --api-base ({self._api_base}) and "
                                "the network, then re-run the same command to resume")
        if attempt.overloaded and attempt.error != "timeout":
            return  # rate limits are handled by backoff and the adaptive limit, not by the breaker
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.policy.failure_limit:
            raise ProviderError(
                f"{self._consecutive_failures} consecutive attempts on {model} failed (last: {attempt.error}); "
                "check the model name, API key and --api-base, then re-run the same command to resume"
            )


def _usage(result: object) -> tuple[int, int]:
    getter = getattr(result, "get_lm_usage", None)
    usage = getter() if callable(getter) else None
    prompt = completion = 0
    for entry in (usage or {}).values():
        prompt += int(entry.get("prompt_tokens") or 0)
        completion += int(entry.get("completion_tokens") or 0)
    return prompt, completion
