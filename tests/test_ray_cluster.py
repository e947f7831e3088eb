"""The ray executor on a two-node ``ray.cluster_utils.Cluster`` (loopback), reached by its address like a real
cluster: one worker per node, the local executor's samples, and a worker SIGKILLed mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray_support import TASK, config, leaf_ledger, sample_lines, watched

from treesynth.pipeline import TreeSynth

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two nodes of one CPU each; the executor connects to the head's address (and disconnects after a run)."""
    if ray.is_initialized():
        ray.shutdown()
    nodes = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    if ray.is_initialized():
        ray.shutdown()
    nodes.shutdown()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local executor's run of the tests' shape."""
    out = tmp_path_factory.mktemp("local") / "run"
    assert TreeSynth(config("local", n=90)).run(TASK, out).status == "complete"
    return out


async def test_a_two_node_cluster_runs_one_worker_per_node_and_gives_the_local_samples(
        cluster: Any, uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with watched(monkeypatch) as seen:
        async def count_nodes(executor: Any) -> None:
            seen["nodes"] = len({node for _pid, node in await executor.worker_places()})

        seen["on_start"] = [count_nodes]
        result = await TreeSynth(config("ray", n=90, **{"executor.address": cluster.address})).arun(
            TASK, tmp_path / "ray")
    assert result.status == "complete"
    assert not ray.is_initialized(), "the executor disconnects from a cluster it connected to"
    assert (tmp_path / "ray" / "samples.jsonl").read_bytes() == (uninterrupted / "samples.jsonl").read_bytes()
    assert leaf_ledger(tmp_path / "ray") == leaf_ledger(uninterrupted)
    assert seen["nodes"] == 2, "SPREAD puts one worker on each node"


async def test_a_worker_killed_mid_run_redoes_only_its_own_calls(cluster: Any, uninterrupted: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers hold their leaf calls (the fake model's hold file) until one worker, with calls outstanding, is
    SIGKILLed; Ray restarts it, its unanswered calls go out again, and the run ends complete with exactly the
    uninterrupted run's samples: no sample twice, no leaf call booked twice."""
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv("TREESYNTH_FAKE_HOLD", str(hold))  # handed to the workers at their start...
    with watched(monkeypatch) as seen:
        seen["on_start"] = [lambda executor: os.environ.pop("TREESYNTH_FAKE_HOLD")]  # ...not to the driver's tree
        run = asyncio.ensure_future(TreeSynth(config("ray", n=90, **{"executor.address": cluster.address})).arun(
            TASK, tmp_path / "ray"))
        held = hold.with_name(hold.name + ".held")
        while not held.exists():  # a worker's leaf call is waiting
            assert not run.done(), run.result() if not run.cancelled() else "cancelled"
            await asyncio.sleep(0.05)
        executor = seen["executor"]
        pool = executor.pool
        while sum(pool.load) == 0 or not all(pool.load):  # both workers have calls outstanding
            await asyncio.sleep(0.05)
        pid, _node = (await executor.worker_places())[0]
        os.kill(pid, signal.SIGKILL)
        while pool.resent == 0:  # the driver saw the death and sent the calls again
            await asyncio.sleep(0.05)
        hold.unlink()
        result = await run
    assert result.status == "complete" and result.summary["counts"]["samples"] == 90
    assert seen["resent"] > 0
    samples = sample_lines(tmp_path / "ray")
    assert len({s["id"] for s in samples}) == len(samples) == 90
    assert (tmp_path / "ray" / "samples.jsonl").read_bytes() == (uninterrupted / "samples.jsonl").read_bytes()
    booked, stored = leaf_ledger(tmp_path / "ray")
    assert booked == stored == leaf_ledger(uninterrupted)[1], "every leaf call booked once, none twice"
