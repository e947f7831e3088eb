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
    await limiter.release()
    for _ in range(3):
        await asyncio.sleep(0)
    assert sum(w.done() for w in waiters) == 1 and limiter.in_flight == 2 and limiter.waiting == 49
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_urgent_waiters_get_slots_before_earlier_ordinary_ones_and_each_kind_keeps_its_order() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    order: list[str] = []

    async def waiter(name: str, urgent: bool) -> None:
        await limiter.acquire(urgent=urgent)
        order.append(name)
        await asyncio.sleep(0)
        await limiter.release()

    names = [("leaf-1", False), ("leaf-2", False), ("tree-1", True), ("leaf-3", False), ("tree-2", True)]
    tasks = [asyncio.ensure_future(waiter(name, urgent)) for name, urgent in names]
    await asyncio.sleep(0)  # all five are queued behind the held slot
    await limiter.release()
    await asyncio.gather(*tasks)
    assert order == ["tree-1", "tree-2", "leaf-1", "leaf-2", "leaf-3"]
    assert limiter.in_flight == 0 and limiter.waiting == 0


async def test_a_newcomer_does_not_overtake_queued_waiters_when_the_limit_grows() -> None:
    limiter = AdaptiveLimiter(2)
    await limiter.acquire()
    await limiter.release(overloaded=True)  # limit 1
    await limiter.acquire()
    queued = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    limiter.limit = 2.0  # grown back (as by successes elsewhere); the queued waiter is first in line
    await limiter.release()
    await asyncio.sleep(0)
    assert queued.done() and limiter.in_flight == 1
    await limiter.release()
