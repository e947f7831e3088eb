"""The litellm path end to end, against the fake OpenAI-compatible server on loopback, with faults."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import read_jsonl

from treesynth.config import RunConfig
from treesynth.models import normalize
from treesynth.pipeline import TreeSynth
from treesynth.testing.fake_server import FakeServer, FaultConfig

# A model name litellm knows to accept JSON schemas, so DSPy sends the strict schema the fake answers.
MODEL = "openai/gpt-4o-mini"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-a-secret")


def run(server: FakeServer, out: Path, n: int, **overrides: object) -> dict:
    config = RunConfig().with_overrides({
        "model.model": MODEL, "model.api_base": server.base_url, "model.timeout": 1.5, "model.attempts": 8,
        "model.cache": False, "tree.depth": 2, "tree.width": 3, "tree.pivots": 4, "synthesis.samples": n,
        "synthesis.samples_per_call": 4, "concurrency": 8, **overrides})
    return TreeSynth(config).run("GSM8K-style grade-school math word problems", out).summary


def assert_exact(out: Path, summary: dict, n: int) -> None:
    samples = read_jsonl(out / "samples.jsonl")
    assert summary["status"] == "complete" and len(samples) == n
    assert len({s["id"] for s in samples}) == n == len({normalize(s["text"]) for s in samples})


def test_litellm_path_survives_429_500_and_timeouts(tmp_path: Path) -> None:
    faults = FaultConfig(rate_429=0.2, retry_after=0.2, rate_500=0.15, rate_hang=0.08, hang_seconds=30, seed=1)
    with FakeServer(faults) as server:
        summary = run(server, tmp_path / "r", 40)
        counts = server.counts
    assert_exact(tmp_path / "r", summary, 40)
    assert counts["429"] > 0 and counts["500"] > 0 and counts["hang"] > 0, counts
    assert summary["llm"]["retries"] >= counts["429"] + counts["500"] + counts["hang"] - 2
    assert summary["llm"]["failed"] == 0
    assert summary["llm"]["cost_usd"] is not None and summary["llm"]["cost_usd"] > 0  # priced by litellm


def test_fault_injection_full_run(tmp_path: Path) -> None:
    """10% 429, 10% 500, 5% hung, 5% malformed: the run still completes with exact, unique counts."""
    faults = FaultConfig(rate_429=0.1, retry_after=0.2, rate_500=0.1, rate_hang=0.05, hang_seconds=30,
                         rate_malformed=0.05, seed=7)
    with FakeServer(faults) as server:
        summary = run(server, tmp_path / "r", 60, concurrency=16)
        counts = server.counts
    assert_exact(tmp_path / "r", summary, 60)
    assert all(counts[k] > 0 for k in ("429", "500", "hang", "malformed")), counts


def test_run_resumes_against_a_server_that_comes_back(tmp_path: Path) -> None:
    with FakeServer(FaultConfig(rate_500=1.0)) as server:
        first = run(server, tmp_path / "r", 20, **{"model.attempts": 2, "model.failure_limit": 3})
    assert first["status"] == "failed" and "resume" in (first["error"] or "")  # stopped before any sample
    with FakeServer(FaultConfig()) as server:
        second = run(server, tmp_path / "r", 20, **{"model.attempts": 2})
    assert_exact(tmp_path / "r", second, 20)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "complete"


def test_api_key_is_never_written(tmp_path: Path) -> None:
    with FakeServer(FaultConfig()) as server:
        run(server, tmp_path / "r", 8)
    secret = os.environ["OPENAI_API_KEY"]
    for file in (tmp_path / "r").iterdir():
        assert secret not in file.read_bytes().decode("utf-8", "ignore"), file.name
