"""Provider limits shared by every process of a run (the driver and each Ray worker).

One :class:`LimitsBoard` holds, per provider model, the state that must be one for the whole cluster:

* the AIMD concurrency limit (``+1/limit`` per success, halved per overload, between 1 and the run's
  ``concurrency``), split among the processes in proportion to the calls each has waiting;
* the ``Retry-After`` pause: a 429 that asks for a wait holds new attempts in *every* process until then;
* the retry budget: retries of failed (not rate-limited) attempts across the cluster are limited to
  ``retry_reserve + retry_ratio * first attempts`` so a failing provider is not hit by N workers' retries;
* the circuit breaker: consecutive counted failures summed over processes (any success resets them) stop
  the run at ``failure_limit``.

Each process holds a :class:`SharedLimiter` (the gateway's :class:`~treesynth.providers.limiter.Limiter`). It
counts what its attempts did and exchanges that for a :class:`Lease` at most every ``interval`` seconds, at
once after an overload or a ``Retry-After``. Under the ray executor the board lives in one named actor; the
exchange is one actor call, so the per-call path never leaves the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from treesynth.errors import ProviderError

ROTATE_SECONDS = 1.0
"""How long a left-over slot stays with one process before the next in turn gets it."""
STALE_SECONDS = 5.0
"""A process that has not reported for this long is presumed gone: its share returns to the others."""


@dataclass(frozen=True, slots=True)
class Report:
    """What one process's attempts did since its last report (counts are deltas)."""

    participant: str
    key: str
    """The provider model the counts are for."""
    wanted: int = 0
    """Attempts waiting for a slot or in flight now."""
    urgent: int = 0
    """Of those, urgent attempts waiting (tree building): served before anyone's ordinary ones."""
    ok: int = 0
    overloads: int = 0
    failures: int = 0
    """Failures the breaker counts, since the report started (see ``reset``)."""
    reset: bool = False
    """An attempt succeeded since the last report (the breaker's count restarts from ``failures``)."""
    first_attempts: int = 0
    retries: int = 0
    pause_until: float = 0.0
    """Wall-clock time until which a provider asked for no new attempt (0: none)."""
    held: int = 0
    """Attempts this process delayed because of a shared pause."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The board's answer: what one process may do until its next report."""

    share: int
    limit: float
    pause_until: float = 0.0
    retry_ok: bool = True
    tripped: str | None = None


@dataclass
class _Model:
    limit: float
    wanted: dict[str, int] = field(default_factory=dict)
    urgent: dict[str, int] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    trailing: dict[str, int] = field(default_factory=dict)
    retry_tokens: float = 0.0
    pause_until: float = 0.0
    tripped: str | None = None
    overloads: int = 0
    held: dict[str, int] = field(default_factory=dict)
    min_share: dict[str, int] = field(default_factory=dict)
    max_share: dict[str, int] = field(default_factory=dict)


class LimitsBoard:
    """The cluster-wide limits of one run, per provider model (see the module docstring).

    Args:
        maximum: The run's ``concurrency``: the most calls in flight over every process.
        failure_limit: Consecutive counted failures (over every process) that stop the run.
        retry_ratio: Retries earned per first attempt.
        retry_reserve: Retries allowed before any attempt earned some.
        clock: Monotonic seconds (stale processes); injectable for tests.
    """

    def __init__(self, maximum: int, failure_limit: int, *, retry_ratio: float = 0.2, retry_reserve: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty board; see the class docstring."""
        self.maximum = maximum
        self.failure_limit = failure_limit
        self.retry_ratio = retry_ratio
        self.retry_reserve = retry_reserve
        self._clock = clock
        self._models: dict[str, _Model] = {}

    def sync(self, report: Report) -> Lease:
        """Take one process's report; return its lease."""
        model = self._models.setdefault(report.key, _Model(limit=float(self.maximum),
                                                           retry_tokens=float(self.retry_reserve)))
        now = self._clock()
        model.seen[report.participant] = now
        model.wanted[report.participant] = report.wanted
        model.urgent[report.participant] = min(report.urgent, report.wanted)
        self._adapt(model, report)
        self._count_failures(model, report)
        model.retry_tokens += self.retry_ratio * report.first_attempts - report.retries
        model.pause_until = max(model.pause_until, report.pause_until)
        model.held[report.participant] = model.held.get(report.participant, 0) + report.held
        share = self._share(model, report.participant, now)
        if report.wanted:
            model.min_share[report.participant] = min(model.min_share.get(report.participant, share), share)
            model.max_share[report.participant] = max(model.max_share.get(report.participant, 0), share)
        return Lease(share=share, limit=model.limit, pause_until=model.pause_until,
                     retry_ok=model.retry_tokens >= 1.0, tripped=model.tripped)

    def stats(self) -> dict[str, Any]:
        """Per model: the limit, overloads seen, breaker state, and per process its held attempts and share range."""
        return {key: {"limit": model.limit, "overloads": model.overloads, "tripped": model.tripped,
                      "retry_tokens": model.retry_tokens, "held": dict(model.held),
                      "min_share": dict(model.min_share), "max_share": dict(model.max_share)}
                for key, model in self._models.items()}

    def _adapt(self, model: _Model, report: Report) -> None:
        """AIMD over every process: each overload halves the limit, each success adds ``1 / limit``."""
        for _ in range(min(report.overloads, 64)):
            model.limit = max(1.0, model.limit / 2)
        model.overloads += report.overloads
        if report.ok:  # n additive steps of 1/L grow L**2 by about 2n
            model.limit = min(float(self.maximum), math.sqrt(model.limit ** 2 + 2 * report.ok))

    def _count_failures(self, model: _Model, report: Report) -> None:
        if report.reset:
            model.trailing = {}
        model.trailing[report.participant] = model.trailing.get(report.participant, 0) + report.failures
        failed = sum(model.trailing.values())
        if model.tripped is None and failed >= self.failure_limit:
            model.tripped = (f"{failed} consecutive attempts on {report.key} failed across the cluster's "
                             "workers; check the model name, API key and --api-base, then re-run the same "
                             "command to resume")

    def _share(self, model: _Model, participant: str, now: float) -> int:
        """The process's part of the limit: urgent attempts first (all of them when the limit allows, else in
        proportion), then the rest of the limit in proportion to the ordinary attempts each live process has."""
        live = [name for name, wanted in model.wanted.items()
                if wanted and now - model.seen.get(name, now) <= STALE_SECONDS]
        if participant not in live:
            return 0
        total = max(1, int(model.limit))
        urgent = {name: model.urgent.get(name, 0) for name in live}
        ordinary = {name: model.wanted[name] - urgent[name] for name in live}
        turn = int(now / ROTATE_SECONDS)
        first = _split(total, urgent, turn)
        rest = _split(total - sum(first.values()), ordinary, turn)
        return min(model.wanted[participant], first[participant] + rest[participant])


def _split(total: int, demand: dict[str, int], turn: int) -> dict[str, int]:
    """``total`` slots split in proportion to ``demand``, never more than asked and never more than ``total``
    in all: shares rounded down, the slots left over to the largest remainders, ties in an order that rotates
    with ``turn`` (so at a limit below the number of processes each one gets its turn)."""
    asked = sum(demand.values())
    if asked <= total:
        return dict(demand)
    exact = {name: total * wanted / asked for name, wanted in demand.items()}
    share = {name: math.floor(value) for name, value in exact.items()}
    names = sorted(demand)
    ties = {name: (index - turn) % len(names) for index, name in enumerate(names)}
    left = total - sum(share.values())
    for name in sorted(names, key=lambda name: (share[name] - exact[name], ties[name]))[:left]:
        share[name] += 1
    return share


Sync = Callable[[Report], Awaitable[Lease]]
"""How a process reaches the board (an actor call under Ray; a plain call in tests)."""


class SharedLimiter:
    """One process's view of a :class:`LimitsBoard` for one provider model (a gateway limiter).

    Args:
        sync: Sends a report and returns the lease.
        participant: This process's name on the board.
        key: The provider model.
        maximum: The run's ``concurrency``.
        interval: Seconds between reports while the process has work (at once after an overload).
        clock: Wall-clock seconds (``Retry-After`` pauses are wall-clock deadlines shared across hosts).
    """

    def __init__(self, sync: Sync, *, participant: str, key: str, maximum: int, interval: float = 0.05,
                 clock: Callable[[], float] = time.time) -> None:
        """Create the limiter (it reports from its first :meth:`acquire` on); see the class docstring."""
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.peak = 0
        self._sync = sync
        self._interval = interval
        self._clock = clock
        self._report = Report(participant=participant, key=key)
        self._lease: Lease | None = None
        self._waiting = 0
        self._urgent = 0
        self._asked = 0
        """The demand reported for the lease in force."""
        self._changed = asyncio.Condition()
        self._kick = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a slot under this process's share and outside any shared pause (``urgent``: ahead of this
        process's ordinary waiters, and counted first by the board)."""
        self._start()
        self._waiting += 1
        self._urgent += urgent
        if urgent:
            self._kick.set()  # the board serves urgent attempts first: tell it now
        held = False
        try:
            async with self._changed:
                while True:
                    self._raise_if_stopped()
                    lease = self._lease
                    pause = (lease.pause_until if lease else 0.0) - self._clock()
                    if (lease is not None and pause <= 0 and self.in_flight < lease.share
                            and (urgent or not self._urgent)):
                        break
                    if lease is not None and pause > 0 and not held:
                        held = True
                        self._count(held=1)
                    if lease is not None and lease.share == 0 and not self._asked:
                        self._kick.set()  # the lease was for no demand: ask now rather than at the next interval
                    try:
                        if pause > 0:  # woken by a release or a new lease, or when the pause is over
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._changed.wait(), pause)
                        else:  # woken by a release or a new lease
                            await self._changed.wait()
                    except asyncio.CancelledError:
                        self._changed.notify(1)  # the wake-up this waiter may have received goes to the next one
                        raise
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
        finally:
            self._waiting -= 1
            self._urgent -= urgent
        self._count(first_attempts=1)

    async def release(self, *, overloaded: bool = False, failed: bool = False) -> None:
        """Free the slot and count how the attempt went."""
        async with self._changed:
            self.in_flight -= 1
            if overloaded:
                self._count(overloads=1)
                self._kick.set()
            if failed:
                self._count(failures=1)
            elif not overloaded:
                self._count(ok=1)
                self._report = replace(self._report, reset=True, failures=0)
            if self._urgent:
                self._changed.notify_all()  # an ordinary waiter would pass the wake-up over: let the urgent take it
            else:
                self._changed.notify(1)

    def hold(self, seconds: float) -> None:
        """Ask every process to start no attempt for ``seconds`` (a ``Retry-After``)."""
        until = self._clock() + seconds
        self._report = replace(self._report, pause_until=max(self._report.pause_until, until))
        if self._lease is not None and until > self._lease.pause_until:
            self._lease = replace(self._lease, pause_until=until)
        self._kick.set()

    def may_retry(self) -> bool:
        """Whether the cluster's retry budget allows one more retry; a granted retry is spent."""
        if self._lease is not None and not self._lease.retry_ok:
            return False
        self._count(retries=1)
        return True

    async def aclose(self) -> None:
        """Stop reporting."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
            self._loop_task = None

    def _count(self, **deltas: int) -> None:
        fields = {name: getattr(self._report, name) + value for name, value in deltas.items()}
        self._report = replace(self._report, **fields)

    def _raise_if_stopped(self) -> None:
        if self._error is not None:
            raise ProviderError(f"the shared provider limits are unreachable ({self._error}); re-run the same "
                                "command to resume")
        if self._lease is not None and self._lease.tripped:
            raise ProviderError(self._lease.tripped)

    def _start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._report_loop())

    async def _report_loop(self) -> None:
        """Report and take a lease; again after ``interval`` (sooner when kicked)."""
        while True:
            report = replace(self._report, wanted=self._waiting + self.in_flight, urgent=self._urgent)
            self._report = Report(participant=report.participant, key=report.key,
                                  pause_until=report.pause_until)
            try:
                lease = await self._sync(report)
            except Exception as exc:  # the board is gone: stop the run rather than run unlimited
                self._error = exc
                async with self._changed:
                    self._changed.notify_all()
                return
            self._lease, self.limit, self._asked = lease, lease.limit, report.wanted
            async with self._changed:
                self._changed.notify_all()
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._interval if report.wanted else 10 * self._interval)
