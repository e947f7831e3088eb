"""Bench sweeps over Ray: cells in flight at once, each a normal run; the same results rows as a local sweep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import read_jsonl
from test_cli_options import invoke

from treesynth.executors.ray_cluster import FanOut, fan_out

SWEEP = {"task": "GSM8K-style grade-school math word problems", "methods": ["treesynth", "temperature"],
         "models": ["test/fake"], "sizes": [12], "seeds": [0],
         "config": {"tree": {"depth": 2, "width": 3, "pivots": 4}, "synthesis": {"samples_per_call": 4}},
         "embedder": "lexical"}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One local Ray instance for the module (a sweep that finds Ray running leaves it running)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, namespace="treesynth", log_to_driver=False)
    yield ray
    ray.shutdown()


def sweep_file(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / f"sweep-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **extra}))
    return path


def test_a_sweep_over_ray_runs_its_cells_at_once_with_the_local_results(local_ray: Any, tmp_path: Path) -> None:
    file = sweep_file(tmp_path)
    code, _, stderr = invoke("bench", str(file), "--out", str(tmp_path / "local"))
    assert code == 0, stderr
    code, stdout, stderr = invoke("bench", str(file), "--out", str(tmp_path / "ray"), "--executor", "ray",
                                  "--workers", "2")
    assert code == 0, stderr
    assert stdout.strip().endswith("results.md")
    names = [row["cell"] for row in read_jsonl(tmp_path / "local" / "results.jsonl")]
    lines = [line for line in stderr.splitlines() if line.startswith("[")]
    assert lines[:2] == [f"[1/2] {names[0]}", f"[2/2] {names[1]}"], "both cells start before either ends"
    assert sorted(lines[2:]) == sorted(f"[{i + 1}/2] {name}: complete, 12/12 samples" for i, name in enumerate(names))
    assert read_jsonl(tmp_path / "ray" / "results.jsonl") == read_jsonl(tmp_path / "local" / "results.jsonl")
    assert (tmp_path / "ray" / "results.md").read_text() == (tmp_path / "local" / "results.md").read_text()
    for name in names:
        executor = json.loads((tmp_path / "ray" / "cells" / name / "run.json").read_text())["config"]["executor"]
        assert (executor["kind"], executor["workers"]) == ("ray", 1)  # two workers shared by two cells in flight
        assert read_jsonl(tmp_path / "ray" / "cells" / name / "samples.jsonl") == read_jsonl(
            tmp_path / "local" / "cells" / name / "samples.jsonl")
    assert local_ray.is_initialized(), "the sweep leaves a Ray it did not start running"


def test_a_sweep_file_can_name_the_executor_and_a_finished_sweep_resumes_as_done(local_ray: Any,
                                                                                 tmp_path: Path) -> None:
    file = sweep_file(tmp_path, methods=["temperature"], sizes=[8, 10], executor={"kind": "ray", "workers": 2})
    out = tmp_path / "sweep"
    code, _, stderr = invoke("bench", str(file), "--out", str(out))
    assert code == 0, stderr
    first = read_jsonl(out / "results.jsonl")
    assert [row["size"] for row in first] == [8, 10] and {row["status"] for row in first} == {"complete"}
    code, _, stderr = invoke("bench", str(file), "--out", str(out))
    assert code == 0, stderr
    assert read_jsonl(out / "results.jsonl") == first


@pytest.mark.parametrize(("workers", "cpus", "runs", "spread"), [
    (None, 2, 2, FanOut(in_flight=2, workers=1)),   # one worker per CPU, shared by the cells in flight
    (None, 8, 3, FanOut(in_flight=3, workers=2)),
    (2, 8, 10, FanOut(in_flight=2, workers=1)),     # --workers bounds the cells in flight
    (1, 8, 4, FanOut(in_flight=1, workers=1)),
])
def test_the_workers_bound_the_cells_in_flight(workers: int | None, cpus: int, runs: int, spread: FanOut) -> None:
    assert fan_out(workers, cpus, runs) == spread


def assert_usage_error(done: tuple[int, str, str], needle: str) -> None:
    code, _, stderr = done
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], stderr


def test_bench_executor_usage_errors(tmp_path: Path) -> None:
    _, stdout, _ = invoke("bench", "--help")
    assert all(f" {flag} " in stdout for flag in ("--executor", "--ray-address", "--workers"))
    assert " --model " not in stdout and " --depth " not in stdout  # the sweep file sets the rest
    file = sweep_file(tmp_path)
    assert_usage_error(invoke("bench", str(file), "--out", str(tmp_path / "a"), "--executor", "local",
                              "--workers", "2"), "--workers needs --executor ray")
    assert_usage_error(invoke("bench", str(file), "--out", str(tmp_path / "b"), "--workers", "0"), "workers")
    nested = sweep_file(tmp_path, config={"executor": {"kind": "ray"}})
    assert_usage_error(invoke("bench", str(nested), "--out", str(tmp_path / "c")), "at the top level")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
