"""``run.json``: every kind of run writes one typed RunRecord, and the README documents it from the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from treesynth.balance import Balancer, BalanceTarget
from treesynth.baselines import Baseline
from treesynth.config import RunConfig
from treesynth.errors import ConfigError
from treesynth.models import FirstSplit, Task
from treesynth.optimizers.tune import TuneOptions, tune
from treesynth.pipeline import TreeSynth
from treesynth.record import RunRecord, describe, read_record

ROOT = Path(__file__).resolve().parents[1]
TASK = Task(description="grade-school math word problems",
            first_split=FirstSplit(criterion="difficulty", values=["easy", "medium", "hard"]))


def test_run_and_resume_write_a_run_record(tmp_path: Path, fake_config: Callable[..., RunConfig]) -> None:
    result = TreeSynth(fake_config()).run(TASK, tmp_path)
    record = read_record(tmp_path / "run.json")
    assert record.kind == "run" and record.status == "complete" and record.resume is None
    assert record == result.record and result.summary == record.as_dict()
    assert record.counts.samples == record.counts.target == 40 and record.counts.input is None
    assert record.llm.calls == sum(row.calls for row in record.llm.by_stage) > 0
    first_total = record.timings.seconds_total
    again = TreeSynth(fake_config()).run(TASK, tmp_path)  # a resumed session adds its time to the total
    assert again.record is not None and again.record.timings.seconds_total >= first_total
    assert again.record.llm.calls == record.llm.calls, "a finished run makes no new calls when resumed"


def test_baseline_and_balance_write_their_kind(tmp_path: Path, fake_config: Callable[..., RunConfig]) -> None:
    Baseline("temperature", fake_config(**{"synthesis.samples": 6})).run(TASK, tmp_path / "temperature")
    baseline = read_record(tmp_path / "temperature" / "run.json")
    assert baseline.kind == "baseline" and baseline.method == "temperature" and baseline.counts.samples == 6
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": f"An easy addition problem, case {i}."}) + "\n" for i in range(30)))
    Balancer(fake_config()).balance(data, TASK, tmp_path / "balance", BalanceTarget(per_leaf=5))
    balance = read_record(tmp_path / "balance" / "run.json")
    assert balance.kind == "balance" and balance.input is not None and balance.input.records == 30
    assert balance.counts.input == 30 and balance.distribution is not None and balance.routing is not None
    assert balance.counts.samples == len((tmp_path / "balance" / "balanced.jsonl").read_text().splitlines())
    tallies = balance.counts.kept, balance.counts.downsampled, balance.counts.duplicate, balance.counts.unrouted
    assert sum(t or 0 for t in tallies) == 30


def test_tune_trials_write_tune_trial_records(tmp_path: Path) -> None:
    base = RunConfig().with_overrides({"model.model": "test/fake", "synthesis.samples": 12, "seed": 4})
    tune(TASK, base, tmp_path, TuneOptions(trials=2, startup_trials=2, budget=60))
    records = [read_record(path) for path in sorted((tmp_path / "trials").glob("*/run.json"))]
    assert len(records) == 2 and {r.kind for r in records} == {"tune-trial"}


def test_a_run_json_of_another_shape_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"status": "complete", "counts": {"output": 3}}))
    with pytest.raises(ConfigError) as caught:
        read_record(path)
    assert "not a treesynth run.json" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="does not exist"):
        read_record(tmp_path / "missing.json")


def test_readme_documents_every_field_of_the_record() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = readme.split("<!-- run-record:start -->\n")[1].split("\n<!-- run-record:end -->")[0]
    assert documented == describe(), "README's run.json table is stale: paste describe()'s output between the markers"
    assert all(f"| `{name}` |" in documented for name in RunRecord.model_fields)
