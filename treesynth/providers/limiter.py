"""Adaptive concurrency: additive increase on success, multiplicative decrease on overload (AIMD).

:class:`Limiter` is what the :class:`~treesynth.providers.gateway.Gateway` needs of one;
:class:`AdaptiveLimiter` is the in-process one, and :class:`~treesynth.providers.limits.SharedLimiter` the one
whose limit, ``Retry-After`` pause, retry budget and circuit breaker are shared by every process of a run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
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

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a free slot (``urgent``: ahead of queued ordinary calls, where the limiter can); may raise
        :class:`~treesynth.errors.ProviderError` once the run must stop."""
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

    Waiters queue first in, first out, except that *urgent* waiters (calls on the run's critical path, such as
    tree building, which every leaf below waits for) are served before any queued ordinary one. A free slot is
    handed to exactly one waiter (never all of them are woken), so a release costs O(1) however many calls are
    queued; a waiter cancelled after it was handed a slot hands the slot on.
    """

    def __init__(self, maximum: int) -> None:
        """Create a limiter allowing at most ``maximum`` calls in flight."""
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.peak = 0
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())
        """Waiting acquirers: urgent ones, then ordinary ones, each oldest first."""

    @property
    def waiting(self) -> int:
        """Acquirers waiting for a slot (cancelled ones not yet skipped included)."""
        return len(self._queues[0]) + len(self._queues[1])

    def _free(self) -> int:
        return max(1, int(self.limit)) - self.in_flight

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a free slot under the current limit (``urgent``: ahead of every queued ordinary acquirer)."""
        if self._free() > 0 and not self.waiting:
            self._take()
            return
        queue = self._queues[0 if urgent else 1]
        slot = asyncio.get_running_loop().create_future()
        queue.append(slot)
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():  # handed a slot, then cancelled before taking it: pass it on
                self.in_flight -= 1
                self._hand_out()
            else:
                with contextlib.suppress(ValueError):  # already skipped by a hand-out
                    queue.remove(slot)
            raise

    async def release(self, *, overloaded: bool = False, failed: bool = False) -> None:
        """Free a slot and adapt the limit to how the call went (``failed`` is for shared limiters)."""
        self.in_flight -= 1
        if overloaded:
            self.limit = max(1.0, self.limit / 2)
        else:
            self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
        self._hand_out()

    def _hand_out(self) -> None:
        """Give each free slot to the next live waiter (urgent ones first)."""
        while self._free() > 0:
            queue = self._queues[0] or self._queues[1]
            if not queue:
                return
            slot = queue.popleft()
            if slot.done():  # cancelled while waiting
                continue
            self._take()
            slot.set_result(None)

    def hold(self, seconds: float) -> None:
        """In one process each call waits out its own ``Retry-After`` (the gateway sleeps); nothing to share."""

    def may_retry(self) -> bool:
        """In one process the retries are bounded per call (``RetryPolicy.attempts``): always ``True``."""
        return True
