"""Adaptive concurrency: additive increase on success, multiplicative decrease on overload (AIMD).

:class:`Limiter` is what the :class:`~treesynth.providers.gateway.Gateway` needs of one;
:class:`AdaptiveLimiter` is the in-process one, and :class:`~treesynth.providers.limits.SharedLimiter` the one
whose limit, ``Retry-After`` pause, retry budget and circuit breaker are shared by every process of a run.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Limiter(Protocol):
    """Bounds the calls in flight and hears how each attempt went."""

    maximum: int
    """The ceiling of the limit."""
    limit: float
    """The current limit."""
    in_flight: int
    """Attempts holding a slot now."""
    peak: int
    """Most attempts ever in flight at once."""

    async def acquire(self) -> None:
        """Wait for a free slot (may raise :class:`~treesynth.errors.ProviderError` once the run must stop)."""
        ...

    async def release(self, *, overloaded: bool = False, failed: bool = False) -> None:
        """Free a slot; ``overloaded``: a 429/503/timeout; ``failed``: a failure the circuit breaker counts."""
        ...

    def hold(self, seconds: float) -> None:
        """A provider asked (``Retry-After``) that no attempt start for ``seconds``."""
        ...

    def may_retry(self) -> bool:
        """Whether the retry budget allows one more retry of a failed (not rate-limited) attempt."""
        ...


class AdaptiveLimiter:
    """Bounds calls in flight by a limit that adapts to the provider.

    The limit starts at ``maximum``; every success adds ``1 / limit`` (about +1 per round of calls),
    every overload signal (429, 503, timeout) halves it, never below 1 nor above ``maximum``.

    Waiters are woken only for the slots that are actually free (never all of them), so a release costs
    O(1) however many calls are queued; a waiter cancelled after its wake-up hands the wake-up on.
    """

    def __init__(self, maximum: int) -> None:
        """Create a limiter allowing at most ``maximum`` calls in flight."""
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.peak = 0
        self._changed = asyncio.Condition()

    def _free(self) -> int:
        return max(1, int(self.limit)) - self.in_flight

    async def acquire(self) -> None:
        """Wait for a free slot under the current limit."""
        async with self._changed:
            while self._free() <= 0:
                try:
                    await self._changed.wait()
                except asyncio.CancelledError:
                    self._changed.notify(1)  # the wake-up this waiter may have received goes to the next one
                    raise
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    async def release(self, *, overloaded: bool = False, failed: bool = False) -> None:
        """Free a slot and adapt the limit to how the call went (``failed`` is for shared limiters)."""
        async with self._changed:
            self.in_flight -= 1
            if overloaded:
                self.limit = max(1.0, self.limit / 2)
            else:
                self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
            if (free := self._free()) > 0:
                self._changed.notify(free)

    def hold(self, seconds: float) -> None:
        """In one process each call waits out its own ``Retry-After`` (the gateway sleeps); nothing to share."""

    def may_retry(self) -> bool:
        """In one process the retries are bounded per call (``RetryPolicy.attempts``): always ``True``."""
        return True
