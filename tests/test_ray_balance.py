"""Balance's routing batches on the ray executor's workers: same routes and samples as a local balance."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import read_jsonl
from test_balance import TASK, config, skewed

from treesynth.balance import Balancer, BalanceTarget
from treesynth.errors import ProviderError
from treesynth.providers import CallRecord, Gateway
from treesynth.tree.routing import ModuleRouteCaller, RouteCall, SampleRouter

ray = pytest.importorskip("ray")

from treesynth.executors.ray_routing import RemoteRouteCaller, RouteOutcome, RouteSpec  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module (an executor that finds Ray running leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, namespace="treesynth", log_to_driver=False)
    yield
    ray.shutdown()


def stages(out: Path) -> dict[str, tuple[int, int, int]]:
    """Calls and tokens per ledger stage of a run directory."""
    rows = json.loads((out / "run.json").read_text())["llm"]["by_stage"]
    return {row["stage"]: (row["calls"], row["prompt_tokens"], row["completion_tokens"]) for row in rows}


def test_routing_runs_on_the_workers_with_the_local_outcome(local_ray: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = skewed(tmp_path / "data.jsonl", n=240, seed=2)
    target = BalanceTarget(per_leaf=12)
    local = Balancer(config(), batch_size=10).balance(data, TASK, tmp_path / "local", target)

    made_here: list[RouteCall] = []
    original = ModuleRouteCaller.__call__

    async def counted(self: ModuleRouteCaller, call: RouteCall) -> Any:
        made_here.append(call)
        return await original(self, call)

    monkeypatch.setattr(ModuleRouteCaller, "__call__", counted)  # the driver's own routing calls (not the workers')
    remote = Balancer(config(**{"executor.kind": "ray", "executor.workers": 2}), batch_size=10).balance(
        data, TASK, tmp_path / "ray", target)

    assert made_here == [], "under --executor ray the routing batches go to the workers"
    assert local.summary["status"] == remote.summary["status"] == "complete"
    for name in ("routing.jsonl", "balanced.jsonl", "unrouted.jsonl"):
        assert read_jsonl(tmp_path / "ray" / name) == read_jsonl(tmp_path / "local" / name), name
    assert remote.summary["counts"] == local.summary["counts"]
    assert remote.summary["routing"] == local.summary["routing"]
    assert stages(tmp_path / "ray") == stages(tmp_path / "local")  # the driver booked every worker call
    assert stages(tmp_path / "ray")["routing"][0] > 0


class _Died:
    """A worker handle whose ``route`` dies ``times`` times, then answers."""

    def __init__(self, times: int, answer: RouteOutcome) -> None:
        self.times, self.answer, self.calls = times, answer, 0
        self.route = self

    def remote(self, spec: RouteSpec, call: RouteCall) -> Any:
        self.calls += 1
        future: asyncio.Future[RouteOutcome] = asyncio.get_running_loop().create_future()
        if self.calls <= self.times:
            future.set_exception(ray.exceptions.ActorDiedError())
        else:
            future.set_result(self.answer)
        return future


def _gateway(booked: list[CallRecord]) -> Gateway:
    return Gateway({}, concurrency=2, on_call=booked.append)


CALL = RouteCall(node_id="root", criterion="difficulty", options=("easy", "hard", "none fits"),
                 subspace=(), samples=("an easy one", "a hard one"), seed=7)
RECORD = CallRecord("routing", "test/fake", "root", True, None, 10, 5, 0.1, 0, False)


def test_a_call_whose_worker_died_goes_to_another_worker() -> None:
    answer = RouteOutcome(record=RECORD, assignments=[(1, "easy"), (2, "hard")])
    dying, healthy = _Died(1, answer), _Died(0, answer)
    booked: list[CallRecord] = []
    caller = RemoteRouteCaller([dying, healthy], RouteSpec.of(SampleRouter(), TASK), _gateway(booked))
    assert asyncio.run(caller(CALL)) == [(1, "easy"), (2, "hard")]
    assert (dying.calls, healthy.calls) == (1, 1) and booked == [RECORD] and caller.load == [0, 0]


def test_a_call_that_kills_every_worker_stops_the_run_resumably() -> None:
    worker = _Died(99, RouteOutcome(record=None))
    booked: list[CallRecord] = []
    gateway = _gateway(booked)
    caller = RemoteRouteCaller([worker], RouteSpec.of(SampleRouter(), TASK), gateway)
    with pytest.raises(ProviderError, match=r"routing call of node root died 3 times.*re-run"):
        asyncio.run(caller(CALL))
    assert worker.calls == 3 and booked == [] and gateway.cap.in_flight == 0


def test_a_stop_on_the_worker_stops_the_driver_after_booking_the_call() -> None:
    worker = _Died(0, RouteOutcome(record=RECORD, stop="the circuit breaker tripped"))
    booked: list[CallRecord] = []
    caller = RemoteRouteCaller([worker], RouteSpec.of(SampleRouter(), TASK), _gateway(booked))
    with pytest.raises(ProviderError, match="circuit breaker"):
        asyncio.run(caller(CALL))
    assert booked == [RECORD]
