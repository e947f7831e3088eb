"""Gateway resilience: retries honouring Retry-After with the slot released, timeouts, AIMD, breaker.

Scenarios run on a virtual-time event loop (:func:`support.run_in_virtual_time`): sleeps, backoffs and
timeouts take their scheduled time exactly, whatever the machine's load, so durations are asserted exactly.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from dspy.utils.exceptions import AdapterParseError, LMAuthError, LMRateLimitError, LMServerError, LMTransportError
from support import run_in_virtual_time

from treesynth.errors import ProviderError
from treesynth.providers import CallRecord, Gateway, RetryPolicy, make_lm
from treesynth.providers.limiter import AdaptiveLimiter
from treesynth.signatures import GeneratePivots


def gateway(concurrency: int = 4, **policy: Any) -> tuple[Gateway, list[CallRecord]]:
    records: list[CallRecord] = []
    lm = make_lm("test/fake", temperature=0.9, max_tokens=64)
    defaults = {"attempts": 4, "timeout": 5.0, "failure_limit": 3, "base_delay": 0.01}
    gw = Gateway(dict.fromkeys(("pivots", "criterion", "coverage", "leaf"), lm), concurrency=concurrency,
                 on_call=records.append, policy=RetryPolicy(**{**defaults, **policy}))
    return gw, records


def flaky(*errors: Exception, result: str = "ok") -> Any:
    queue = list(errors)

    async def fn(lm: Any, config: dict[str, Any]) -> str:
        if queue:
            raise queue.pop(0)
        return result

    return fn


def test_retry_after_is_honoured_and_the_slot_is_free_while_sleeping() -> None:
    async def scenario() -> None:
        clock = asyncio.get_running_loop().time
        gw, records = gateway(concurrency=1)
        slow = flaky(LMRateLimitError("429", retry_after=0.3))
        started = clock()
        first = asyncio.create_task(gw.call("leaf", stage="leaf", node_id="a", seed=1, fn=slow))
        await asyncio.sleep(0.05)
        # with concurrency 1, this call can only run now because the rate-limited call released its slot
        second = await gw.call("leaf", stage="leaf", node_id="b", seed=2, fn=flaky())
        assert second == "ok" and clock() - started == pytest.approx(0.05) and not first.done()
        assert await first == "ok"
        assert clock() - started == pytest.approx(0.3)  # slept the Retry-After, not the 0.01 s backoff
        by_node = {r.node_id: r for r in records}
        assert by_node["a"].retries == 1 and by_node["a"].ok and by_node["b"].retries == 0
        assert by_node["a"].seconds == pytest.approx(0.3) and by_node["b"].seconds == pytest.approx(0.0)
        assert [r.node_id for r in records] == ["b", "a"]
        assert gw.limiter.limit < 1.5  # halved on the 429, then recovering additively

    run_in_virtual_time(scenario())


def test_server_errors_and_timeouts_are_retried_then_recorded_as_failures() -> None:
    async def scenario() -> None:
        gw, records = gateway(attempts=3, timeout=0.05, failure_limit=10)
        assert await gw.call("leaf", stage="leaf", node_id="a", seed=1,
                             fn=flaky(LMServerError("500"), LMServerError("500"))) == "ok"

        async def hang(lm: Any, config: dict[str, Any]) -> str:
            await asyncio.sleep(10)
            return "late"

        assert await gw.call("leaf", stage="leaf", node_id="b", seed=2, fn=hang) is None
        assert [(r.node_id, r.ok, r.retries, r.error) for r in records] == [("a", True, 2, None),
                                                                          ("b", False, 2, "timeout")]

    run_in_virtual_time(scenario())


def test_parse_failures_are_not_retried_and_do_not_trip_the_breaker() -> None:
    async def scenario() -> None:
        gw, records = gateway(failure_limit=2)
        for i in range(5):
            bad = flaky(AdapterParseError(adapter_name="JSONAdapter", signature=GeneratePivots, lm_response="x"))
            assert await gw.call("leaf", stage="leaf", node_id=str(i), seed=i, fn=bad) is None
        assert all(r.error == "parse" and r.retries == 0 for r in records)

    run_in_virtual_time(scenario())


def test_auth_error_stops_at_once_with_a_fix() -> None:
    async def scenario() -> None:
        gw, _ = gateway()
        with pytest.raises(ProviderError, match="API key"):
            await gw.call("leaf", stage="leaf", node_id="a", seed=1, fn=flaky(LMAuthError("401")))

    run_in_virtual_time(scenario())


def test_a_429_storm_longer_than_the_attempts_is_waited_out_within_rate_limit_wait() -> None:
    """Ten 429s asking for 2 s each, on a call with 3 attempts: waited out (20 s of the 30 s allowance) and
    the call succeeds; the same storm on a 15 s allowance fails once the allowance and the attempts are spent."""
    async def scenario() -> None:
        clock = asyncio.get_running_loop().time
        gw, records = gateway(attempts=3, rate_limit_wait=30.0)
        storm = [LMRateLimitError("429", retry_after=2.0) for _ in range(10)]
        started = clock()
        assert await gw.call("pivots", stage="pivots", node_id="root", seed=1, fn=flaky(*storm), required=True) == "ok"
        assert clock() - started == pytest.approx(20.0) and records[-1].retries == 10
        gw, records = gateway(attempts=3, rate_limit_wait=15.0)
        assert await gw.call("leaf", stage="leaf", node_id="a", seed=1,
                             fn=flaky(*[LMRateLimitError("429", retry_after=2.0) for _ in range(10)])) is None
        assert records[-1].retries == 7 + 2  # seven waits fit in 15 s, then the 3 attempts are spent

    run_in_virtual_time(scenario())


def test_retry_after_zero_falls_back_to_backoff() -> None:
    """``Retry-After: 0`` (or an HTTP-date already past) must not make retries instant."""
    async def scenario() -> None:
        clock = asyncio.get_running_loop().time
        gw, _ = gateway(attempts=3, base_delay=1.0, rate_limit_wait=0.0)
        started = clock()
        assert await gw.call("leaf", stage="leaf", node_id="a", seed=1,
                             fn=flaky(LMRateLimitError("429", retry_after=0.0))) == "ok"
        assert clock() - started >= 0.5  # backoff (1 s with jitter in [0.5, 1.5]) on the loop's virtual clock

    run_in_virtual_time(scenario())


def test_circuit_breaker_after_consecutive_failures_but_not_on_rate_limits() -> None:
    async def scenario() -> None:
        gw, records = gateway(attempts=1, failure_limit=3, rate_limit_wait=0.0)
        for i in range(5):  # rate limits never trip the breaker
            assert await gw.call("leaf", stage="leaf", node_id=f"r{i}", seed=i,
                                 fn=flaky(LMRateLimitError("429"))) is None
        for i in range(2):
            assert await gw.call("leaf", stage="leaf", node_id=str(i), seed=i, fn=flaky(LMServerError("x"))) is None
        with pytest.raises(ProviderError, match="3 consecutive attempts"):
            await gw.call("leaf", stage="leaf", node_id="2", seed=2, fn=flaky(LMServerError("x")))
        assert len(records) == 8  # the call that tripped the breaker is in the ledger too
        assert (records[-1].node_id, records[-1].ok) == ("2", False) and "LMServerError" in (records[-1].error or "")

    run_in_virtual_time(scenario())


def test_hangs_that_time_out_together_while_the_provider_answers_others_do_not_trip_the_breaker() -> None:
    # issue 14, load at concurrency 128 with 5% hangs: the hangs of one wave time out in the same tick, more than
    # failure_limit of them in a row, while the provider kept answering the calls started beside them
    async def scenario() -> None:
        gw, records = gateway(concurrency=32, attempts=1, timeout=1.0, failure_limit=3)

        async def hang(lm: Any, config: dict[str, Any]) -> str:
            await asyncio.sleep(10)
            return "late"

        async def quick(lm: Any, config: dict[str, Any]) -> str:
            await asyncio.sleep(0.1)
            return "ok"

        calls = [gw.call("leaf", stage="leaf", node_id=f"n{i}", seed=i, fn=hang if i % 4 == 0 else quick)
                 for i in range(24)]
        results = await asyncio.gather(*calls)
        assert results.count(None) == 6 and results.count("ok") == 18  # six timeouts in one tick, no stop
        # a provider that answers nothing still trips it: every attempt started after the last answer
        with pytest.raises(ProviderError, match="3 consecutive attempts"):
            await asyncio.gather(*(gw.call("leaf", stage="leaf", node_id=f"d{i}", seed=100 + i, fn=hang)
                                   for i in range(3)))
        assert sum(not r.ok for r in records) == 9

    run_in_virtual_time(scenario())


def test_required_calls_stop_the_run_instead_of_degrading_the_tree() -> None:
    async def scenario() -> None:
        gw, _ = gateway(attempts=2)
        assert await gw.call("pivots", stage="pivots", node_id="ok", seed=1, fn=flaky(), required=True) == "ok"
        with pytest.raises(ProviderError, match="pivots call for node root failed after 2 attempts"):
            await gw.call("pivots", stage="pivots", node_id="root", seed=1, required=True,
                          fn=flaky(LMServerError("500"), LMServerError("500")))

    run_in_virtual_time(scenario())


def test_unreachable_provider_fails_fast() -> None:
    async def scenario() -> None:
        clock = asyncio.get_running_loop().time
        gw, records = gateway(attempts=6, base_delay=5.0)
        started = clock()
        with pytest.raises(ProviderError, match=r"cannot reach .* --api-base"):
            await gw.call("pivots", stage="pivots", node_id="root", seed=1, fn=flaky(LMTransportError("refused")))
        assert clock() == started  # no backoff at all (a single retry would have slept at least 2.5 s)
        assert [(r.node_id, r.ok, r.retries) for r in records] == [("root", False, 0)]
        assert "LMTransportError" in (records[0].error or "")

    run_in_virtual_time(scenario())


def test_a_reset_mid_body_on_the_first_call_is_retried_not_taken_for_a_wrong_api_base() -> None:
    """The host answered and then the connection broke (httpx.ReadError under the transport error): an outage
    to retry, unlike a refused connection (above), which fails fast."""
    async def scenario() -> None:
        gw, records = gateway(attempts=3)
        reset = LMTransportError("Connection error.")
        reset.__cause__ = httpx.ReadError("Connection reset by peer")
        assert await gw.call("pivots", stage="pivots", node_id="root", seed=1, fn=flaky(reset), required=True) == "ok"
        assert [(r.node_id, r.ok, r.retries) for r in records] == [("root", True, 1)]

    run_in_virtual_time(scenario())


def test_adaptive_limiter_aimd() -> None:
    async def scenario() -> None:
        limiter = AdaptiveLimiter(8)
        await limiter.acquire()
        await limiter.release(overloaded=True)
        assert limiter.limit == 4
        for _ in range(40):
            await limiter.acquire()
            await limiter.release()
        assert 7 < limiter.limit <= 8
        in_flight = 0
        seen = 0

        async def worker() -> None:
            nonlocal in_flight, seen
            await limiter.acquire()
            in_flight += 1
            seen = max(seen, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            await limiter.release()

        await asyncio.gather(*(worker() for _ in range(50)))
        assert seen <= 8

    run_in_virtual_time(scenario())


def test_calls_to_an_in_process_model_queue_outside_the_timeout() -> None:
    # the embedded engine generates one call at a time; 4 concurrent calls of 0.15 s each with a 0.25 s
    # timeout only succeed if waiting for the engine does not count against the timeout

    async def scenario(model: str) -> tuple[list[CallRecord], float]:
        clock = asyncio.get_running_loop().time
        engine = asyncio.Lock()  # one generation at a time, as in the embedded engine

        async def fn(lm: Any, config: dict[str, Any]) -> str:
            async with engine:
                await asyncio.sleep(0.15)
            return "ok"

        records: list[CallRecord] = []
        lm = SimpleNamespace(model=model, kwargs={"temperature": 1.0})
        gw = Gateway(dict.fromkeys(("pivots", "criterion", "coverage", "leaf"), lm), concurrency=4,  # type: ignore[arg-type]
                     on_call=records.append, policy=RetryPolicy(attempts=1, timeout=0.25, failure_limit=10))
        started = clock()
        await asyncio.gather(*(gw.call("leaf", stage="leaf", node_id=f"n{i}", seed=i, fn=fn) for i in range(4)))
        return records, clock() - started

    local, took = run_in_virtual_time(scenario("local/gemma-3-270m@0123456789ab"))
    assert [r.ok for r in local] == [True] * 4
    assert took == pytest.approx(0.6)  # one after the other
    assert sorted(r.seconds for r in local) == pytest.approx([0.15, 0.3, 0.45, 0.6])  # the ledger counts the queueing
    # a remote model's calls run concurrently: all but the first wait for the engine inside their timeout
    remote, took = run_in_virtual_time(scenario("openai/gpt-4o-mini"))
    assert sorted((r.ok, r.error) for r in remote) == [(False, "timeout")] * 3 + [(True, None)]
    assert took == pytest.approx(0.25)


def test_a_call_cap_starts_no_call_beyond_it_even_with_calls_in_flight() -> None:
    from treesynth.errors import BudgetExceededError
    from treesynth.providers.budget import SpendingCap

    async def scenario() -> None:
        records: list[CallRecord] = []
        lm = make_lm("test/fake", temperature=0.9, max_tokens=64)
        started: list[int] = []

        async def slow(lm: Any, config: dict[str, Any]) -> str:
            started.append(config["seed"])
            await asyncio.sleep(1)
            return "ok"

        gw = Gateway({"leaf": lm}, concurrency=8, on_call=records.append, cap=SpendingCap(max_calls=5, calls=2))
        results = await asyncio.gather(*(gw.call("leaf", stage="leaf", node_id=str(i), seed=i, fn=slow)
                                         for i in range(6)), return_exceptions=True)
        assert [r for r in results if r == "ok"] == ["ok"] * 3  # 2 from an earlier session + 3 = the cap
        assert all(isinstance(r, BudgetExceededError) for r in results if r != "ok")
        assert len(started) == len(records) == 3 and gw.cap.calls == 5
        assert gw.cap.stopped is not None and "--max-calls 5" in gw.cap.stopped and "higher" in gw.cap.stopped
        with pytest.raises(BudgetExceededError):  # stays stopped
            await gw.call("leaf", stage="leaf", node_id="x", seed=9, fn=slow)
        assert len(started) == 3

    run_in_virtual_time(scenario())


def test_a_cost_cap_stops_before_the_call_that_would_exceed_it() -> None:
    from treesynth.errors import BudgetExceededError
    from treesynth.providers.budget import SpendingCap

    cap = SpendingCap(max_cost_usd=1.0, cost_usd=0.0)
    cap.admit()
    cap.charge("openai/gpt-4o-mini", 2_000_000, 0)  # $0.30 at gpt-4o-mini's $0.15 per million prompt tokens
    cap.admit()
    cap.charge("openai/gpt-4o-mini", 2_000_000, 0)
    cap.admit()
    cap.charge("openai/gpt-4o-mini", 2_000_000, 0)  # $0.90 spent; one more call (~$0.30) would pass $1
    with pytest.raises(BudgetExceededError, match=r"--max-cost \$1"):
        cap.admit()
    assert cap.calls == 3 and cap.in_flight == 0
    unpriced = SpendingCap(max_cost_usd=1.0)
    unpriced.admit()
    unpriced.charge("openai/no-such-model-xyz", 10, 10)
    with pytest.raises(BudgetExceededError, match="use --max-calls"):
        unpriced.admit()


def test_tree_building_calls_wait_for_a_slot_ahead_of_queued_leaf_calls() -> None:
    async def scenario() -> None:
        gw, _ = gateway(concurrency=1)
        started: list[str] = []

        def answer(name: str) -> Any:
            async def fn(lm: Any, config: dict[str, Any]) -> str:
                started.append(name)
                await asyncio.sleep(0.2)
                return name

            return fn

        calls = [("leaf", "leaf-0"), ("leaf", "leaf-1"), ("leaf", "leaf-2"), ("coverage", "coverage"),
                 ("leaf", "leaf-3"), ("pivots", "pivots")]
        tasks = []
        for seed, (role, name) in enumerate(calls):
            tasks.append(asyncio.create_task(gw.call(role, stage=role, node_id=name, seed=seed, fn=answer(name))))
            await asyncio.sleep(0)  # queued in this order behind leaf-0, which holds the only slot
        await asyncio.gather(*tasks)
        assert started == ["leaf-0", "coverage", "pivots", "leaf-1", "leaf-2", "leaf-3"]

    run_in_virtual_time(scenario())
