"""Adaptive concurrency: additive increase on success, multiplicative decrease on overload (AIMD)."""

from __future__ import annotations

import asyncio


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

    async def release(self, *, overloaded: bool = False) -> None:
        """Free a slot and adapt the limit to how the call went."""
        async with self._changed:
            self.in_flight -= 1
            if overloaded:
                self.limit = max(1.0, self.limit / 2)
            else:
                self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
            if (free := self._free()) > 0:
                self._changed.notify(free)
