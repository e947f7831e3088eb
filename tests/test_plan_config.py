"""Planning accuracy, config round-trip, per-role models."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import dspy
import pytest
import yaml
from test_run_e2e import treesynth

from treesynth.config import ROLES, RunConfig
from treesynth.models import Task
from treesynth.pipeline import TreeSynth
from treesynth.planning import aplan, leaf_calls_for
from treesynth.providers import make_lm

ARGS = ["GSM8K-style grade-school math word problems", "--model", "test/fake", "--depth", "3", "--width", "4",
        "-n", "500"]


def test_plan_matches_the_following_run_within_ten_percent(tmp_path: Path) -> None:
    out = tmp_path / "R"
    planned = treesynth("run", *ARGS, "--out", str(out), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    done = treesynth("run", *ARGS, "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    assert abs(plan["calls"] - run["llm"]["calls"]) <= 0.1 * run["llm"]["calls"]
    assert plan["leaves"] == run["counts"]["leaves"] and plan["nodes"] == run["counts"]["nodes"]
    tree_calls = sum(r["calls"] for r in run["llm"]["by_stage"] if r["stage"] != "leaf")
    assert plan["tree_calls"] == tree_calls  # the run reused the planned tree: no tree call was made twice
    assert run["llm"]["cost_usd"] == 0.0


def test_analytic_plan_makes_no_call_and_bounds_the_tree(tmp_path: Path) -> None:
    done = treesynth("run", *ARGS, "--dry-run", "--analytic", "--json", "--out", str(tmp_path / "none"))
    plan = json.loads(done.stdout)
    assert plan["leaves"] == 64 and plan["nodes"] == 85 and plan["analytic"]
    assert not (tmp_path / "none").exists()


def test_plan_prices_leaf_synthesis_with_the_leaf_model(tmp_path: Path) -> None:
    args = ["poems", "--model", "test/fake", "--role-model", "leaf=openai/gpt-4o-mini", "-n", "3000", "--depth", "2"]
    done = treesynth("run", *args, "--dry-run", "--analytic", "--json", "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cost_usd"] > 0  # the tree stages are free, the leaf stage is not
    free = treesynth("run", *args[:3], *args[5:], "--dry-run", "--analytic", "--json", "--out", str(tmp_path / "b"))
    assert json.loads(free.stdout)["cost_usd"] == 0

    config = RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 2, "synthesis.samples": 3000})
    fake = make_lm("test/fake", temperature=1.0, max_tokens=512)
    never_called = dspy.LM("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", api_key="unused", cache=False)
    lms = {**dict.fromkeys(ROLES, fake), "leaf": never_called}
    plan = asyncio.run(aplan(TreeSynth(config, lms=lms), Task.from_arg("poems"), tmp_path / "c"))  # tree only
    assert plan.leaf_calls > 0 and plan.cost_usd is not None and plan.cost_usd > 0


def test_leaf_call_projection() -> None:
    assert leaf_calls_for(10, 5, 0.0) == 2
    assert leaf_calls_for(42, 5, 0.1) == 10
    assert leaf_calls_for(0, 5, 0.1) == 0


def test_run_json_config_round_trips(tmp_path: Path) -> None:
    first = tmp_path / "a"
    assert treesynth("run", "haiku about rivers", "--model", "test/fake", "-n", "12", "--depth", "2",
                     "--width", "3", "--seed", "5", "--role-temperature", "leaf=1.3", "--out", str(first),
                     "-q").returncode == 0
    config = json.loads((first / "run.json").read_text())["config"]
    assert config["model"]["roles"]["leaf"]["temperature"] == 1.3
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(RunConfig.model_validate(config).dump_yaml())
    assert yaml.safe_load(yaml_file.read_text()) == config
    second = tmp_path / "b"
    assert treesynth("run", "haiku about rivers", "--config", str(yaml_file), "--out", str(second),
                     "-q").returncode == 0
    again = treesynth("run", "haiku about rivers", "--config", str(first / "run.json"), "--out",
                      str(tmp_path / "c"), "-q")
    assert again.returncode == 0, again.stderr
    for run_dir in (second, tmp_path / "c"):
        assert json.loads((run_dir / "run.json").read_text())["config"] == config
        assert (run_dir / "samples.jsonl").read_text() == (first / "samples.jsonl").read_text()


def test_live_cost_matches_the_exact_price_list_lookup() -> None:
    from treesynth.providers.pricing import estimate_cost, live_cost

    for prompt, completion in ((1234, 567), (0, 10), (100_000, 0)):
        exact = estimate_cost("openai/gpt-4o-mini", prompt, completion)
        assert exact is not None and live_cost("openai/gpt-4o-mini", prompt, completion) == pytest.approx(exact)
    assert live_cost("test/fake", 10, 10) == 0.0
    assert live_cost("openai/no-such-model-xyz", 10, 10) is None


def test_a_plan_for_a_run_that_holds_samples_projects_only_the_missing_ones(tmp_path: Path) -> None:
    out = tmp_path / "R"
    args = ["run", "recipes for weeknight dinners", "--model", "test/fake", "--depth", "2", "--out", str(out)]
    assert treesynth(*args, "-n", "20", "-q").returncode == 0
    finished = json.loads(treesynth(*args, "-n", "20", "--dry-run", "--json").stdout)
    assert finished["leaf_calls"] == 0
    extended = json.loads(treesynth(*args, "-n", "40", "--dry-run", "--json").stdout)
    fresh = json.loads(treesynth(*args[:-2], "--out", str(tmp_path / "fresh"), "-n", "40", "--dry-run",
                                 "--json").stdout)
    assert 0 < extended["leaf_calls"] < fresh["leaf_calls"]
