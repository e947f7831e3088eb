"""The adaptive limiter wakes no more waiters than it has free slots, and loses no wake-up (AIMD: test_gateway)."""

from __future__ import annotations

import asyncio

import pytest

from treesynth.providers.limiter import AdaptiveLimiter


async def test_a_cancelled_waiter_hands_its_wake_up_to_the_next() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    first = asyncio.ensure_future(limiter.acquire())
    second = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)  # both are waiting
    await limiter.release()  # wakes one waiter...
    first.cancel()  # ...which is cancelled before it takes the slot
    await asyncio.wait_for(second, timeout=1)  # the other still gets it
    assert limiter.in_flight == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_release_wakes_only_as_many_waiters_as_slots_are_free() -> None:
    limiter = AdaptiveLimiter(2)
    await limiter.acquire()
    await limiter.acquire()
    waiters = [asyncio.ensure_future(limiter.acquire()) for _ in range(50)]
    await asyncio.sleep(0)
    woken = 0
    original = limiter._changed.notify

    def counting(n: int = 1) -> None:
        nonlocal woken
        woken += n
        original(n)

    limiter._changed.notify = counting  # type: ignore[method-assign]
    await limiter.release()
    await asyncio.sleep(0)
    assert woken == 1 and sum(w.done() for w in waiters) == 1 and limiter.in_flight == 2
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)

