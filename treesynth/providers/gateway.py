"""Every LLM call goes through one :class:`Gateway`.

It owns: adaptive bounded concurrency (:class:`AdaptiveLimiter`; tree-building calls, the run's critical
path, queue ahead of leaf calls), per-call timeouts, retries with
exponential backoff that honour ``Retry-After`` and release the concurrency slot while sleeping,
per-call seeds (distinct ``rollout_id``/``seed`` so no two draws collapse in DSPy's cache), one ledger
record per call, spending caps (:class:`~treesynth.providers.budget.SpendingCap`: no call starts once a
cap would be exceeded), parse-failure handling, and a circuit breaker that stops the run cleanly (as
:class:`ProviderError`) after sustained failure.

Structured output: given the run's :class:`~treesynth.providers.structured.StructuredOutputs` (the same
object the adapter reads), a call refused for its response format under ``auto`` is retried at once with
the model's next dialect, which then stays in force; such refusals never trip the breaker. A model whose
first ``policy.parse_limit`` completed calls all fail to parse (none succeeding) stops the run with the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
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

from treesynth.config import ModelConfig, Role, is_local_model
from treesynth.errors import BudgetExceededError, ProviderError
from treesynth.providers.budget import SpendingCap
from treesynth.providers.failures import UNREACHABLE_MARKERS, broke_mid_exchange
from treesynth.providers.limiter import AdaptiveLimiter, Limiter
from treesynth.providers.structured import DIALECTS, Dialect, StructuredOutputs, refuses_response_format
from treesynth.redact import redact

T = TypeVar("T")
URGENT_ROLES: frozenset[Role] = frozenset({"pivots", "criterion", "coverage"})
"""Roles whose calls wait for a concurrency slot ahead of queued leaf and routing calls: tree building is the
run's critical path (a leaf cannot start before its ancestors are expanded), while leaf calls only add up."""
MAX_BACKOFF_SECONDS = 60.0
CAP_POLL_SECONDS = 0.05
"""How often a call stopped by a spending cap checks whether the calls in flight have been booked."""


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
    """How hard the gateway tries before a call counts as failed.

    ``parse_limit``: when the first this many completed calls to a model all failed to parse (and none
    succeeded) the run stops, naming the structured-output fix (0: never).

    ``rate_limit_wait``: seconds one call may spend waiting out rate limits (429s) on top of its
    ``attempts``: a rate-limited attempt whose wait fits in what is left of it is retried without using up
    an attempt, so a storm of 429s that lasts longer than ``attempts`` answers is waited out, not failed.
    """

    attempts: int = 6
    timeout: float = 120.0
    failure_limit: int = 8
    base_delay: float = 1.0
    parse_limit: int = 6
    rate_limit_wait: float = 600.0

    @classmethod
    def for_model(cls, model: ModelConfig) -> RetryPolicy:
        """The policy of a model configuration (its attempts, timeout, breaker threshold and rate-limit wait)."""
        return cls(attempts=model.attempts, timeout=model.timeout, failure_limit=model.failure_limit,
                   rate_limit_wait=model.rate_limit_wait)


CallFn = Callable[[dspy.LM, dict[str, Any]], Awaitable[T]]


@dataclass
class _Attempt:
    result: Any = None
    error: str | None = None
    retry_after: float | None = None
    overloaded: bool = False
    rate_limited: bool = False
    retryable: bool = False
    unreachable: bool = False
    dialect: Dialect | None = None
    """The structured-output dialect in force when the attempt started."""
    exception: BaseException | None = None
    started: float = 0.0
    """Loop time at which the model was asked (after any in-process engine queue)."""


class Gateway:
    """Runs the pipeline's LLM calls.

    Args:
        lms: The LM serving each role (built with DSPy retries off: the gateway retries).
        concurrency: Most calls in flight at once (the adaptive limit's ceiling).
        on_call: Receives a :class:`CallRecord` after every call (the run store's ledger).
        policy: Attempts, timeout, circuit-breaker threshold.
        structured: The run's structured-output state (the adapter's too); ``None``: no format fallback.
        cap: The run's spending caps (checked before every call starts); ``None``: no cap.
        limiters: Makes the concurrency limiter of a provider model (:func:`model_key`); default: one
            :class:`AdaptiveLimiter` of ``concurrency`` for every call of this process (the ray executor makes a
            :class:`~treesynth.providers.limits.SharedLimiter` per model, shared with its workers).
    """

    def __init__(self, lms: dict[Role, dspy.LM], *, concurrency: int, on_call: Callable[[CallRecord], None],
                 policy: RetryPolicy | None = None, structured: StructuredOutputs | None = None,
                 cap: SpendingCap | None = None, limiters: Callable[[str], Limiter] | None = None) -> None:
        """Create a gateway; see the class docstring."""
        self.lms = lms
        self.cap = cap or SpendingCap()
        self.structured = structured
        self._parse_failures: dict[str, int] = {}
        self._parsed: set[str] = set()
        self.limiter: Limiter = AdaptiveLimiter(concurrency)
        """The limiter of calls to the first role's model (of every call without ``limiters``)."""
        self._limiters: dict[str, Limiter] = {}
        if limiters is not None:
            self._limiters = {key: limiters(key) for key in dict.fromkeys(model_key(lm) for lm in lms.values())}
            self.limiter = next(iter(self._limiters.values()))
        self.policy = policy or RetryPolicy()
        self._on_call = on_call
        self._consecutive_failures = 0
        self._alive_at = -math.inf
        """Loop time of the last successful answer: a failure of an attempt started before it is no outage."""
        self._reached = False
        self._api_base = next((lm.kwargs.get("api_base") for lm in lms.values() if lm.kwargs.get("api_base")),
                              "provider default")
        self._serial: dict[str, asyncio.Semaphore] = {}

    async def call(self, role: Role, *, stage: str, node_id: str, seed: int, fn: CallFn[T],
                   required: bool = False) -> T | None:
        """Run ``fn(lm, config)`` for ``role``; ``None`` when the output did not parse or the call failed.

        ``config`` carries ``rollout_id == seed`` and the role's temperature. Retryable provider errors (rate
        limits, overload, server errors, timeouts, transport) are retried up to ``policy.attempts`` times with the
        slot released while waiting; a rate limit whose wait fits in ``policy.rate_limit_wait`` (what is left of it
        for this call) does not use up an attempt. :class:`ProviderError` stops the run (resumably) when:
        authentication fails; the provider was never reached (fail fast on a wrong ``--api-base``); a ``required``
        call fails for a provider reason (tree building must not be degraded by an outage); ``policy.failure_limit``
        consecutive attempts fail for reasons other than rate limits (the circuit breaker); or the model's first
        ``policy.parse_limit`` completed calls all failed to parse; :class:`~treesynth.errors.BudgetExceededError`
        (a ``ProviderError``) when a spending cap would be exceeded, before the call starts. A call refused for its
        response format under ``auto`` is retried at once with the model's next dialect (not counted by the
        breaker).
        """
        lm = self.lms[role]
        await self._admit()
        start = asyncio.get_running_loop().time()
        try:
            attempt, retries, stop = await self._attempts(lm, seed, fn, urgent=role in URGENT_ROLES)
        except BaseException:  # cancelled, or a provider error before any outcome: nothing to book
            self.cap.release()
            raise
        self._record(stage, lm.model, node_id, attempt, start, retries)
        if stop is not None:  # breaker tripped or host unreachable: the ledger still got this call
            raise stop
        self._track_parse(lm, attempt)
        if required and attempt.error not in (None, "parse"):
            raise ProviderError(f"the {stage} call for node {node_id} failed after {retries + 1} attempts "
                                f"({attempt.error}); {_refusal_fix(attempt)}re-run the same command to resume")
        return attempt.result if attempt.error is None else None

    async def _attempts(self, lm: dspy.LM, seed: int, fn: CallFn[Any], *, urgent: bool
                        ) -> tuple[_Attempt, int, ProviderError | None]:
        """Try one call with retries: its last attempt, the retries made and the error that stops the run
        (``urgent``: each attempt waits for a slot ahead of queued ordinary calls)."""
        config = {"rollout_id": seed, "seed": seed, "temperature": lm.kwargs.get("temperature", 1.0)}
        jitter = random.Random(seed)
        attempt = _Attempt()
        retries = 0
        used = waits = 0  # attempts used up (a rate-limited one waited out on policy.rate_limit_wait is not)
        rate_wait = self.policy.rate_limit_wait
        while True:
            attempt = await self._attempt(lm, config, fn, urgent)
            for _ in DIALECTS:  # refused for its response format: at once, with the next dialect
                if not self._falls_back(lm, attempt):
                    break
                retries += 1
                attempt = await self._attempt(lm, config, fn, urgent)
            try:
                self._track_failures(attempt, lm.model)
            except ProviderError as stop:
                return attempt, retries, stop
            if not attempt.retryable:
                break
            delay = self._delay(attempt, waits, jitter)
            limiter = self.limiter_for(lm)
            if attempt.rate_limited and attempt.retry_after:
                limiter.hold(delay)  # a shared limiter holds every process's new attempts too
            if attempt.rate_limited and 0 < delay <= rate_wait:
                rate_wait -= delay  # waited out on the rate-limit allowance, not on the attempts
            else:
                used += 1
                if used >= self.policy.attempts or not limiter.may_retry():
                    break
            retries += 1
            waits += 1
            await asyncio.sleep(delay)  # the slot is free while we sleep
        return attempt, retries, None

    async def admit(self) -> None:
        """Reserve one call made elsewhere (a ray worker) under the spending caps; :meth:`book` it when back."""
        await self._admit()

    def book(self, record: CallRecord) -> None:
        """Book a call made elsewhere (its worker's record): charge the caps and hand it to the ledger."""
        self.cap.charge(record.model, record.prompt_tokens, record.completion_tokens)
        self._on_call(record)

    async def _admit(self) -> None:
        """Reserve one call under the spending caps. At a cap no call starts, and the stop is raised once the
        calls in flight are booked, so the run keeps (and the ledger counts) what was already paid for."""
        try:
            self.cap.admit()
        except BudgetExceededError:
            while self.cap.in_flight:
                await asyncio.sleep(CAP_POLL_SECONDS)
            raise

    def _record(self, stage: str, model: str, node_id: str, attempt: _Attempt, start: float, retries: int) -> None:
        """Hand one call (its last attempt's outcome, usage and total time) to the ledger.

        Times come from the event loop's clock (the one its sleeps and timeouts follow: ``time.monotonic``
        on a standard loop), so a test on a virtual-time loop sees exact durations.
        """
        prompt, completion = _usage(attempt.result)
        cached = attempt.error is None and prompt == completion == 0
        seconds = asyncio.get_running_loop().time() - start
        self.cap.charge(model, prompt, completion)
        self._on_call(CallRecord(stage, model, node_id, attempt.error is None, attempt.error, prompt, completion,
                                 seconds, retries, cached))

    def limiter_for(self, lm: dspy.LM) -> Limiter:
        """The limiter of ``lm``'s provider model."""
        return self._limiters.get(model_key(lm), self.limiter)

    async def aclose(self) -> None:
        """Stop the limiters' reporting (shared limiters); the gateway takes no call afterwards."""
        for limiter in self._limiters.values():
            closing = getattr(limiter, "aclose", None)
            if closing is not None:
                await closing()

    async def _attempt(self, lm: dspy.LM, config: dict[str, Any], fn: CallFn[Any], urgent: bool) -> _Attempt:
        limiter = self.limiter_for(lm)
        await limiter.acquire(urgent=urgent)
        outcome = _Attempt(dialect=self.structured.dialect(lm) if self.structured is not None else None)
        try:
            async with self._engine_turn(lm):  # queueing for an in-process engine is not the model's time
                outcome.started = asyncio.get_running_loop().time()
                outcome.result = await asyncio.wait_for(fn(lm, config), self.policy.timeout)
        except AdapterParseError:
            outcome.error = "parse"
        except TimeoutError:
            outcome.error, outcome.retryable, outcome.overloaded = "timeout", True, True
        except LMAuthError as exc:
            raise ProviderError(f"authentication failed for {lm.model} ({redact(str(exc))[:120]}); set the provider's "
                                "API key in the environment (e.g. OPENAI_API_KEY) and re-run to resume") from None
        except Exception as exc:
            outcome.exception = exc
            outcome.error = f"{type(exc).__name__}: {' '.join(redact(str(exc)).split())[:200]}"  # one line
            outcome.retryable = is_retryable_lm_error(exc)
            outcome.unreachable = (isinstance(exc, LMTransportError) or any(
                marker in outcome.error for marker in UNREACHABLE_MARKERS)) and not broke_mid_exchange(exc)
            outcome.retry_after = getattr(exc, "retry_after", None)
            outcome.rate_limited = isinstance(exc, LMRateLimitError) or getattr(exc, "status", None) == 429
            outcome.overloaded = outcome.rate_limited or getattr(exc, "status", None) in (503, 529)
        finally:
            await limiter.release(overloaded=outcome.overloaded, failed=_counted(outcome))
        return outcome

    def _falls_back(self, lm: dspy.LM, attempt: _Attempt) -> bool:
        """Whether ``attempt`` was refused for its response format and the model now has a next dialect."""
        if self.structured is None or attempt.exception is None:
            return False
        return self.structured.fall_back(lm, attempt.dialect, attempt.exception)

    def _track_parse(self, lm: dspy.LM, attempt: _Attempt) -> None:
        """Stop the run when a model's first ``policy.parse_limit`` completed calls all failed to parse."""
        model = str(lm.model)
        if attempt.error is None:
            self._parsed.add(model)
            return
        if attempt.error != "parse" or model in self._parsed or self.policy.parse_limit <= 0:
            return
        failed = self._parse_failures[model] = self._parse_failures.get(model, 0) + 1
        if failed < self.policy.parse_limit:
            return
        if attempt.dialect is None:
            fix = "choose another --model"
        else:
            others = [d for d in DIALECTS if d != attempt.dialect]
            fix = (f"set model.structured_output (or --structured-output) to {', '.join(others[:-1])} or "
                   f"{others[-1]}")
        sent = f" (sent as {attempt.dialect})" if attempt.dialect else ""
        raise ProviderError(f"every one of the first {failed} calls to {model} failed to parse its structured "
                            f"output{sent}; {fix}, then re-run the same command to resume")

    def _engine_turn(self, lm: dspy.LM) -> contextlib.AbstractAsyncContextManager[Any]:
        """A turn on ``lm``'s engine: in-process models generate one call at a time, so calls queue here,
        before the timeout starts, instead of inside the engine where waiting would count as a slow call."""
        model = str(lm.model)
        if not is_local_model(model):
            return contextlib.nullcontext()
        return self._serial.setdefault(model, asyncio.Semaphore(1))

    def _delay(self, attempt: _Attempt, index: int, jitter: random.Random) -> float:
        """The wait before retry ``index + 1``: the provider's ``Retry-After`` when it asks for one, else (and
        for ``Retry-After: 0`` or an HTTP-date already past) exponential backoff with jitter."""
        if attempt.retry_after is not None and attempt.retry_after > 0:
            return min(float(attempt.retry_after), MAX_BACKOFF_SECONDS)
        backoff: float = min(self.policy.base_delay * 2**index, MAX_BACKOFF_SECONDS)
        return backoff * jitter.uniform(0.5, 1.5)

    def _track_failures(self, attempt: _Attempt, model: str) -> None:
        if attempt.error is None or attempt.error == "parse":
            self._consecutive_failures = 0
            self._reached = True
            self._alive_at = asyncio.get_running_loop().time()
            return
        if attempt.unreachable and not self._reached:
            raise ProviderError(f"cannot reach {model} ({attempt.error}); check --api-base ({self._api_base}) and "
                                "the network, then re-run the same command to resume")
        if attempt.overloaded and attempt.error != "timeout":
            return  # rate limits are handled by backoff and the adaptive limit, not by the breaker
        if attempt.started < self._alive_at:
            return  # the provider answered another call while this one was out: a lone failure, not an outage
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.policy.failure_limit:
            raise ProviderError(
                f"{self._consecutive_failures} consecutive attempts on {model} failed (last: {attempt.error}); "
                f"{_refusal_fix(attempt) or 'check the model name, API key and --api-base, then '}"
                "re-run the same command to resume"
            )


def model_key(lm: dspy.LM) -> str:
    """The provider model an LM calls: its model string, and the server when one is set (``model@api_base``)."""
    base = lm.kwargs.get("api_base")
    return f"{lm.model}@{base}" if base else str(lm.model)


def _counted(attempt: _Attempt) -> bool:
    """Whether the circuit breaker counts ``attempt`` as a failure (rate limits and parse failures are not)."""
    if attempt.error is None or attempt.error == "parse":
        return False
    return not attempt.overloaded or attempt.error == "timeout"


def _refusal_fix(attempt: _Attempt) -> str:
    """The fix when ``attempt`` was refused for its (explicitly chosen) response format, else ''."""
    if attempt.dialect is None or attempt.exception is None or not refuses_response_format(attempt.exception):
        return ""
    others = ", ".join(d for d in ("auto", *DIALECTS) if d != attempt.dialect)
    return (f"the server refused structured output as {attempt.dialect}: set model.structured_output (or "
            f"--structured-output) to one of {others}, then ")


def _usage(result: object) -> tuple[int, int]:
    getter = getattr(result, "get_lm_usage", None)
    usage = getter() if callable(getter) else None
    prompt = completion = 0
    for entry in (usage or {}).values():
        prompt += int(entry.get("prompt_tokens") or 0)
        completion += int(entry.get("completion_tokens") or 0)
    return prompt, completion
