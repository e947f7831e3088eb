"""Provider limits shared across processes: one AIMD limit, one Retry-After pause, one retry budget, one breaker.

Two :class:`SharedLimiter` participants (stand-ins for two Ray workers) talk to one :class:`LimitsBoard` through
plain calls, on clocks the tests move by hand.
"""

from __future__ import annotations

import asyncio

import pytest

from treesynth.errors import ProviderError
from treesynth.providers.limits import Lease, LimitsBoard, Report, SharedLimiter

KEY = "openai/gpt-4o-mini"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pair(board: LimitsBoard, clock: Clock, maximum: int = 8) -> tuple[SharedLimiter, SharedLimiter]:
    async def sync(report: Report) -> Lease:
        return board.sync(report)

    return (SharedLimiter(sync, participant="a", key=KEY, maximum=maximum, interval=0.001, clock=clock),
            SharedLimiter(sync, participant="b", key=KEY, maximum=maximum, interval=0.001, clock=clock))


def test_the_limit_is_split_by_demand_and_an_overload_anywhere_halves_it_for_everyone() -> None:
    clock = Clock()
    board = LimitsBoard(8, failure_limit=5, clock=clock)
    assert board.sync(Report("a", KEY, wanted=6)).share == 6   # alone: all it wants, up to the limit
    assert board.sync(Report("b", KEY, wanted=6)).share == 4   # two equal demands share the limit of 8
    assert board.sync(Report("a", KEY, wanted=6)).share == 4
    lease = board.sync(Report("a", KEY, wanted=6, overloads=1))  # a's 429...
    assert lease.limit == 4 and lease.share == 2
    assert board.sync(Report("b", KEY, wanted=6)).share == 2     # ...shrinks b's share too
    grown = board.sync(Report("b", KEY, wanted=6, ok=40))         # successes anywhere grow it back, additively
    assert 4 < grown.limit <= 8
    clock.now += 60                                               # a went quiet long ago: b may take it all
    assert board.sync(Report("b", KEY, wanted=6)).share == min(6, int(grown.limit))


def test_consecutive_failures_add_up_across_processes_and_any_success_resets_them() -> None:
    board = LimitsBoard(8, failure_limit=4)
    assert board.sync(Report("a", KEY, failures=2)).tripped is None
    assert board.sync(Report("b", KEY, ok=1, reset=True, failures=1)).tripped is None  # b's success resets a's
    assert board.sync(Report("a", KEY, failures=2)).tripped is None                     # 1 + 2
    tripped = board.sync(Report("b", KEY, failures=1)).tripped                          # 1 + 2 + 1 = 4
    assert tripped is not None and "4 consecutive attempts" in tripped and "resume" in tripped


def test_the_retry_budget_is_earned_by_first_attempts_anywhere_and_spent_by_retries_anywhere() -> None:
    board = LimitsBoard(8, failure_limit=100, retry_ratio=0.5, retry_reserve=2)
    assert board.sync(Report("a", KEY, retries=2)).retry_ok is False       # the reserve is spent
    assert board.sync(Report("b", KEY, first_attempts=4)).retry_ok is True  # b's calls earn 2 more
    assert board.sync(Report("a", KEY, retries=2)).retry_ok is False


async def test_a_retry_after_seen_by_one_process_holds_the_other() -> None:
    clock = Clock()
    board = LimitsBoard(8, failure_limit=5, clock=clock)
    a, b = pair(board, clock)
    await a.acquire()
    await b.acquire()
    a.hold(30.0)                                   # a's provider said Retry-After: 30
    await a.release(overloaded=True)
    await b.release()
    for _ in range(50):                            # b's next report brings the pause (within one interval)
        await asyncio.sleep(0.002)
    waiting = asyncio.ensure_future(b.acquire())   # b never saw a 429
    for _ in range(50):
        await asyncio.sleep(0.002)
    assert not waiting.done()                      # held by a's pause
    assert board.stats()[KEY]["held"].get("b") == 1
    clock.now += 31                                # the pause is over
    await asyncio.wait_for(waiting, 5)
    await b.release()
    await a.aclose()
    await b.aclose()


async def test_a_tripped_breaker_stops_every_process_at_its_next_attempt() -> None:
    clock = Clock()
    board = LimitsBoard(8, failure_limit=2, clock=clock)
    a, b = pair(board, clock)
    for _ in range(2):
        await a.acquire()
        await a.release(failed=True)
    await b.acquire()                              # b's lease still comes from before a's report
    await b.release()
    for _ in range(50):
        await asyncio.sleep(0.002)
    with pytest.raises(ProviderError, match="consecutive attempts"):
        await b.acquire()
    await a.aclose()
    await b.aclose()


async def test_an_unreachable_board_stops_the_process_instead_of_running_unlimited() -> None:
    async def gone(report: Report) -> Lease:
        raise ConnectionError("actor died")

    limiter = SharedLimiter(gone, participant="a", key=KEY, maximum=4, interval=0.001)
    with pytest.raises(ProviderError, match="unreachable"):
        await asyncio.wait_for(limiter.acquire(), 5)
    await limiter.aclose()


def test_urgent_attempts_are_served_first_across_processes() -> None:
    """The driver's tree-building calls (urgent) get their slots before the workers' many leaf calls share the rest."""
    board = LimitsBoard(8, failure_limit=5)
    assert board.sync(Report("w0", KEY, wanted=40)).share == 8
    assert board.sync(Report("w1", KEY, wanted=40)).share == 4
    assert board.sync(Report("driver", KEY, wanted=3, urgent=3)).share == 3   # all its urgent attempts
    workers = [board.sync(Report(name, KEY, wanted=40)).share for name in ("w0", "w1")]
    assert sorted(workers) == [2, 3]                                          # the other 5, split by demand
    assert board.sync(Report("driver", KEY, wanted=0)).share == 0
    assert board.sync(Report("w0", KEY, wanted=40)).share == 4


async def test_an_urgent_waiter_takes_the_next_slot_before_earlier_ordinary_ones() -> None:
    clock = Clock()
    board = LimitsBoard(1, failure_limit=5, clock=clock)
    a, _ = pair(board, clock, maximum=1)
    await a.acquire()
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await a.acquire(urgent=urgent)
        order.append(name)
        await a.release()

    ordinary = [asyncio.ensure_future(take(f"leaf{i}", False)) for i in range(3)]
    await asyncio.sleep(0.01)
    tree = asyncio.ensure_future(take("tree", True))
    await asyncio.sleep(0.01)
    await a.release()
    await asyncio.wait_for(asyncio.gather(*ordinary, tree), 5)
    assert order[0] == "tree"
    await a.aclose()


def test_the_shares_never_add_up_to_more_than_the_limit_and_a_lone_slot_takes_turns() -> None:
    clock = Clock()
    board = LimitsBoard(1, failure_limit=5, clock=clock)
    holders = []
    for second in range(4):
        clock.now = 1000.0 + second
        shares = {name: board.sync(Report(name, KEY, wanted=10)).share for name in ("w0", "w1")}
        shares = {name: board.sync(Report(name, KEY, wanted=10)).share for name in ("w0", "w1")}  # both current
        assert sum(shares.values()) == 1, shares
        holders.append(next(name for name, share in shares.items() if share))
    assert set(holders) == {"w0", "w1"}, "the one slot goes round"
    board = LimitsBoard(10, failure_limit=5, clock=clock)
    for name, wanted in (("a", 7), ("b", 7), ("c", 7)):
        board.sync(Report(name, KEY, wanted=wanted))
    assert sum(board.sync(Report(name, KEY, wanted=7)).share for name in ("a", "b", "c")) == 10
