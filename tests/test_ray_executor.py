"""The ray executor on a local Ray instance (2 CPUs): same samples as local, resumes across executors, and one
shared limit for every worker under a 429 storm."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_support import TASK, config, leaf_ledger, sample_lines, watched

from treesynth.pipeline import TreeSynth
from treesynth.testing.fake_server import FakeServer, FaultConfig

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module (the executor uses it and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, namespace="treesynth", log_to_driver=False)
    yield
    ray.shutdown()


async def test_the_ray_executor_gives_the_local_executors_samples(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    local = await TreeSynth(config("local")).arun(TASK, tmp_path / "local")
    with watched(monkeypatch) as seen:
        remote = await TreeSynth(config("ray")).arun(TASK, tmp_path / "ray")
    assert local.status == remote.status == "complete"
    workers = {name for name in seen["stats"]["test/fake"]["max_share"] if name.startswith("worker-")}
    assert workers == {"worker-0", "worker-1"}, "both workers made leaf calls"
    for name in ("samples.jsonl", "rejected.jsonl"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    assert leaf_ledger(tmp_path / "ray") == leaf_ledger(tmp_path / "local")
    assert remote.summary["config"]["executor"]["kind"] == "ray"


@pytest.mark.parametrize(("first", "then"), [("local", "ray"), ("ray", "local")])
async def test_a_run_started_under_one_executor_resumes_under_the_other(tmp_path: Path, first: str,
                                                                         then: str) -> None:
    whole = await TreeSynth(config("local")).arun(TASK, tmp_path / "whole")
    capped = await TreeSynth(config(first, **{"budget.max_calls": 17})).arun(TASK, tmp_path / "resumed")
    assert capped.status == "partial" and capped.summary["llm"]["calls"] == 17  # the tree, and 5 leaf calls
    resumed = await TreeSynth(config(then)).arun(TASK, tmp_path / "resumed")
    assert resumed.status == "complete" and resumed.summary["sessions"] == 2
    assert (tmp_path / "whole" / "samples.jsonl").read_bytes() == (tmp_path / "resumed" / "samples.jsonl").read_bytes()
    assert leaf_ledger(tmp_path / "resumed") == leaf_ledger(tmp_path / "whole")
    assert whole.status == "complete"


async def test_a_429_storm_seen_by_the_workers_slows_every_one_of_them(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests 30 to 37 (leaf calls) get 429 with Retry-After: 1. The one limit halves for everyone, so every
    worker's share shrinks, new attempts wait out the announced pause, and the run still ends complete."""
    storm = FaultConfig(burst="429", burst_start=30, burst_length=8, retry_after=1.0, latency_ms=20, seed=1)
    monkeypatch.setenv("OPENAI_API_KEY", "test-not-a-secret")
    with FakeServer(storm) as server, watched(monkeypatch) as seen:
        cfg = config("ray", n=200, **{"model.model": "openai/gpt-4o-mini", "model.api_base": server.base_url,
                                          "model.cache": False})
        result = await TreeSynth(cfg).arun(TASK, tmp_path / "storm")
        statuses = server.counts
    assert result.status == "complete" and result.summary["counts"]["samples"] == 200
    assert statuses["burst"] == 8, statuses
    board = seen["stats"][f"openai/gpt-4o-mini@{server.base_url}"]
    assert board["overloads"] >= 8 and board["limit"] < 8
    assert sum(board["held"].values()) > 0, "no attempt was held by a shared Retry-After pause"
    for worker in ("worker-0", "worker-1"):
        assert board["min_share"][worker] < board["max_share"][worker], str(board)
    assert len({s["id"] for s in sample_lines(tmp_path / "storm")}) == 200
    assert "OPENAI_API_KEY" not in (tmp_path / "storm" / "run.json").read_text()
    assert os.environ["OPENAI_API_KEY"] not in (tmp_path / "storm" / "run.json").read_text()
