"""Tuning the tree shape with Optuna on the fake model: the objective, the front, resuming after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FixedTrial, TrialState

from treesynth.config import RunConfig
from treesynth.errors import ConfigError
from treesynth.models import Task
from treesynth.optimizers.report import knee
from treesynth.optimizers.search_space import SearchSpace
from treesynth.optimizers.tune import TrialObjective, TuneOptions, open_study, recover_stale, tune

TASK = Task(description="GSM8K-style grade-school math word problems")
# seed 4: the fake model splits the root on a finite criterion, so depth and width shape the tree
BASE = RunConfig().with_overrides({"model.model": "test/fake", "synthesis.samples": 24, "seed": 4})
SHAPE = {"pivots": 4, "samples_per_call": 4, "leaf_temperature": 1.0, "pivots_temperature": 1.0}


def test_trial_objective_depends_on_depth_and_width(tmp_path: Path) -> None:
    objective = TrialObjective(TASK, BASE, TuneOptions(), tmp_path)
    shallow = objective(FixedTrial({"depth": 1, "width": 2, **SHAPE}))
    deep = objective(FixedTrial({"depth": 3, "width": 6, **SHAPE}))
    wide = objective(FixedTrial({"depth": 1, "width": 6, **SHAPE}))
    assert deep[1] > shallow[1]  # a deeper tree costs more LLM calls
    assert len({shallow, deep, wide}) == 3  # ...and every shape gives its own (diversity, cost)
    assert len({shallow[0], deep[0], wide[0]}) == 3
    assert objective(FixedTrial({"depth": 1, "width": 2, **SHAPE})) == shallow  # same shape: same run dir, resumed
    tokens = TrialObjective(TASK, BASE, TuneOptions(cost="tokens", diversity="mean-distance"), tmp_path / "t")
    div, cost = tokens(FixedTrial({"depth": 1, "width": 2, **SHAPE}))
    assert 0 < div < 1 and cost > 1000


def test_over_budget_trials_are_pruned(tmp_path: Path) -> None:
    objective = TrialObjective(TASK, BASE, TuneOptions(budget=5), tmp_path)
    with pytest.raises(optuna.TrialPruned, match="budget of 5 calls"):
        objective(FixedTrial({"depth": 3, "width": 6, **SHAPE}))


def test_tune_writes_the_front_and_resumes_from_storage(tmp_path: Path) -> None:
    options = TuneOptions(trials=5, startup_trials=3, budget=60)
    first = tune(TASK, BASE, tmp_path, options)
    assert first.finished == first.ran == 5 and first.recovered == 0
    for key in ("table", "csv", "png", "config"):
        assert Path(first.files[key]).stat().st_size > 0, key
    assert first.chosen is not None and first.chosen in first.front
    assert "(chosen)" in Path(first.files["table"]).read_text()
    chosen = RunConfig.load(Path(first.files["config"]))  # usable with `run --config`
    assert chosen.tree.depth == first.chosen["depth"] and chosen.tree.width == first.chosen["width"]
    assert chosen.model.temperature("leaf") == pytest.approx(first.chosen["leaf_temperature"])
    study = optuna.load_study(study_name=first.study_name, storage=first.storage)
    assert study.trials[0].user_attrs.get("baseline") is True  # the base config is always measured
    assert study.metric_names == ["Vendi score (lexical)", "LLM calls"]
    costs = {t.params["depth"]: t.values[1] for t in study.trials if t.state == TrialState.COMPLETE}
    assert len(costs) > 1
    again = tune(TASK, BASE, tmp_path, TuneOptions(trials=6, startup_trials=3, budget=60))
    assert (again.study_name, again.finished, again.ran) == (first.study_name, 6, 1)


def test_a_study_measuring_other_objectives_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    open_study("s", url, TuneOptions())
    with pytest.raises(ConfigError, match="measures"):
        open_study("s", url, TuneOptions(cost="tokens"))


def test_stale_running_trials_are_failed_and_retried(tmp_path: Path) -> None:
    study = open_study("s", f"sqlite:///{tmp_path / 's.db'}", TuneOptions())
    trial = study.ask()
    SearchSpace().suggest(trial)  # a trial a killed process left RUNNING
    assert recover_stale(study) == 1
    assert study.trials[0].state == TrialState.FAIL
    retry = study.ask()
    assert SearchSpace().suggest(retry) == study.trials[0].params and retry.user_attrs["retry_of"] == 0


def test_knee_picks_the_balanced_front_point() -> None:
    rows = [{"trial": 0, "diversity": 10.0, "cost": 10.0}, {"trial": 1, "diversity": 19.0, "cost": 20.0},
            {"trial": 2, "diversity": 20.0, "cost": 100.0}]
    assert knee(rows) == rows[1] and knee([]) is None


def test_search_space_files(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"depth": [1, 2], "width": 3, "leaf_temperature": [0.6, 1.0, 0.2]}))
    space = SearchSpace.load(path)
    params = space.suggest(FixedTrial({"depth": 2, "width": 3, "pivots": 4, "samples_per_call": 3,
                                       "leaf_temperature": 0.8, "pivots_temperature": 1.0}))
    assert SearchSpace.overrides(params)["model.roles.leaf.temperature"] == 0.8
    assert space.baseline(RunConfig())["depth"] == 2  # the default depth 3 clamped into [1, 2]
    path.write_text("depth: [3, 1]\n")
    with pytest.raises(ConfigError, match="low 3 is above high 1"):
        SearchSpace.load(path)
    path.write_text("colour: [1, 2]\n")
    with pytest.raises(ConfigError, match="unknown parameter"):
        SearchSpace.load(path)
    path.write_text("leaf_temperature: [0.5, 1.0, 0]\n")
    with pytest.raises(ConfigError, match="leaf_temperature: step 0 must be above 0"):
        SearchSpace.load(path)
    for text, bound in (("width: [1, 4]\n", "width: 1 is out of range"), ("pivots_temperature: [1, 3]\n",
                                                                        "pivots_temperature: 3 is out of range")):
        path.write_text(text)  # every trial drawing the bound would fail: refused before the study starts
        with pytest.raises(ConfigError, match=bound):
            SearchSpace.load(path)


def _trial_states(url: str, name: str) -> list[TrialState]:
    return [t.state for t in optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)]


def test_cli_tune_of_ten_trials_resumes_after_being_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"

    def command(trials: int) -> list[str]:
        return [sys.executable, "-m", "treesynth", "tune", TASK.description, "--model", "test/fake", "-n", "20",
                "--trials", str(trials), "--storage", url, "--study", "killed", "--out", str(tmp_path / "tune"),
                "--startup-trials", "4", "--budget", "60"]

    args = command(10)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    first = subprocess.run(command(1), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr  # one finished trial...
    # ...then a second trial frozen mid-run (every fake call waits while the hold file exists), killed -9
    hold = tmp_path / "hold"
    hold.touch()
    held = tmp_path / "hold.held"
    log = tmp_path / "held.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(args, env={**env, "TREESYNTH_FAKE_HOLD": str(hold)}, stdout=subprocess.DEVNULL,
                                stderr=stderr)
        try:
            while not held.exists() and proc.poll() is None:  # event: a call of the next trial is waiting
                time.sleep(0.05)
            assert held.exists(), f"tune exited before a trial was held: {log.read_text()[-2000:]}"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    hold.unlink()
    first_state, *rest = _trial_states(url, "killed")
    assert first_state in (TrialState.COMPLETE, TrialState.PRUNED) and rest == [TrialState.RUNNING]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 recovered from an interrupted run" in done.stdout
    study = optuna.load_study(study_name="killed", storage=url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 10 and TrialState.RUNNING not in [t.state for t in study.trials]
    killed = next(t for t in study.trials if t.state == TrialState.FAIL)
    retried = next(t for t in study.trials if t.user_attrs.get("retry_of") == killed.number)
    assert retried.params == killed.params and retried.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert (tmp_path / "tune" / "front.md").exists() and (tmp_path / "tune" / "chosen.yaml").exists()
