"""Baselines deliver exactly n unique samples in the run format; sweeps run resumably on the fake server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ScriptedEngine, read_jsonl, scripted_lms
from test_run_e2e import treesynth

from treesynth.baselines import Baseline
from treesynth.config import RunConfig
from treesynth.errors import BudgetExceededError
from treesynth.models import normalize
from treesynth.testing.fake_lm import fake_answer
from treesynth.testing.fake_server import FakeServer, FaultConfig

TASK = "GSM8K-style grade-school math word problems"


def cfg(n: int) -> RunConfig:
    return RunConfig().with_overrides({"model.model": "test/fake", "synthesis.samples": n})


@pytest.mark.parametrize("method", ["temperature", "evol", "persona"])
def test_each_baseline_delivers_exactly_n_unique_samples(tmp_path: Path, method: str) -> None:
    result = Baseline(method, cfg(25)).run(TASK, tmp_path / method)  # type: ignore[arg-type]
    samples = read_jsonl(tmp_path / method / "samples.jsonl")
    assert result.status == "complete" and len(samples) == 25
    assert len({normalize(s["text"]) for s in samples}) == 25
    assert all(set(s) == {"id", "leaf_id", "path", "text"} for s in samples)
    assert json.loads((tmp_path / method / "run.json").read_text())["method"] == method
    if method == "persona":
        assert len({s["path"][0]["value"] for s in samples}) == 25, "one distinct persona per sample"


def test_evol_instruct_evolves_accepted_samples(tmp_path: Path) -> None:
    operations: list[bool] = []

    def spy(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        operations.append("[[ ## operation ## ]]" in prompt)
        return fake_answer(prompt, schema, seed)

    Baseline("evol", cfg(20), lms=scripted_lms(ScriptedEngine(spy))).run(TASK, tmp_path / "e")
    assert operations[:5] == [False] * 5 and sum(operations) >= 15  # a seed pool, then evolutions


def test_persona_file_is_used_and_cycled(tmp_path: Path) -> None:
    personas = ["a retired train driver", "a nurse on night shifts", "a teenage chess player"]
    result = Baseline("persona", cfg(9), personas=personas).run(TASK, tmp_path / "p")
    used = [s.path[0].value for s in result.samples()]
    assert sorted(set(used)) == sorted(personas) and len(used) == 9


def test_bench_sweep_on_the_fake_server_is_resumable(tmp_path: Path) -> None:
    sweep = yaml.safe_load(Path(__file__).parents[1].joinpath("benchmarks/sweeps/small-fake.yaml").read_text())
    sweep["sizes"] = [12]
    sweep["treesynth_configs"] = {"default": {}}
    with FakeServer(FaultConfig(latency_ms=5, seed=3)) as server:
        sweep["models"] = ["openai/gpt-4o-mini"]
        sweep["config"]["model"] = {"api_base": server.base_url}
        file = tmp_path / "sweep.yaml"
        file.write_text(yaml.safe_dump(sweep))
        env = {**os.environ, "OPENAI_API_KEY": "test"}
        out = tmp_path / "bench"
        first = treesynth("bench", str(file), "--out", str(out), env=env, timeout=300)
        assert first.returncode == 0, first.stderr
        requests = server.requests_total
        again = treesynth("bench", str(file), "--out", str(out), env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        assert server.requests_total == requests, "finished cells must not be recomputed"
    rows = read_jsonl(out / "results.jsonl")
    assert {r["method"] for r in rows} == {"treesynth", "temperature", "evol", "persona"}
    assert all(r["status"] == "complete" and r["samples"] == 12 and r["mean_cosine_distance"] > 0 for r in rows)
    assert "| treesynth |" in (out / "results.md").read_text()
    for plot in ("diversity_vs_size.png", "diversity_vs_cost.png"):
        assert (out / plot).stat().st_size > 1000


def test_a_persona_run_stopped_between_persona_rounds_resumes_to_the_uninterrupted_samples(tmp_path: Path) -> None:
    whole = Baseline("persona", cfg(25)).run(TASK, tmp_path / "whole")
    with pytest.raises(BudgetExceededError):  # one persona round of three, then the cap stops it
        Baseline("persona", cfg(25).with_overrides({"budget.max_calls": 1})).run(TASK, tmp_path / "resumed")
    assert whole.status == "complete"
    assert Baseline("persona", cfg(25)).run(TASK, tmp_path / "resumed").status == "complete"
    for name in ("samples.jsonl", "tree.json"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
