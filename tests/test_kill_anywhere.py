"""SIGKILL ``run``, ``balance``, ``bench``, ``compile`` and ``tune`` anywhere, re-run them: the same outputs.

Each command runs on ``test/fake`` with a fixed seed, once uninterrupted and once killed at seeded moments
(tests/kill_harness.py) and re-run until it finishes. What must come out byte-identical:

- ``run``: ``samples.jsonl``, ``tree.json``, ``rejected.jsonl``.
- ``balance``: ``balanced.jsonl``, ``routing.jsonl``, ``unrouted.jsonl``, ``rejected.jsonl``, ``tree.json``.
- ``bench``: ``results.jsonl`` (every cell's status, samples and metrics) less each cell's spend (calls,
  tokens, cost: they count calls repeated after a kill, at most those in flight, which the ledger check
  bounds), and every cell's ``samples.jsonl`` and ``tree.json``; ``results.md`` renders the same rows,
  ``run.json``/``metrics.json`` carry timings.
- ``compile``: ``program.json`` less its wall-clock ``seconds`` fields (the instructions, the per-module
  scores, the optimizer's call count) and the example trees' ``samples.jsonl``/``tree.json``. The
  optimizer's own calls (GEPA's rollouts) are not in a ledger: a kill during optimization re-runs it from
  the stored trees, which is why the program is still identical.
- ``tune``: every trial's ``samples.jsonl``/``tree.json`` and the study's finished trials in order (their
  parameters, diversity, samples, leaves, nodes and run directory). Not the trial numbers (a killed trial
  is failed and re-run under a new number) and not the cost objective: it counts the trial's LLM calls
  from its ledger, calls repeated after a kill included (at most the calls in flight), so ``front.csv``
  and ``chosen.yaml`` may rank a killed trial as slightly dearer (benchmarks/RESULTS.md, issue 14).

The ledger accounting (no settled node or leaf call redone) is the harness's.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from kill_harness import Outcome, Scenario, call_counts, fingerprints, kill_and_resume, record_line, run_to_end

TASK = "GSM8K-style grade-school math word problems"
FAKE = ["--model", "test/fake", "--seed", "7"]


def _skewed(work: Path) -> None:
    rng = random.Random(0)
    with (work / "data.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(240):
            level = rng.choices(["easy", "medium", "hard"], [85, 12, 3])[0]
            op = rng.choices(["addition", "subtraction", "multiplication"], [70, 20, 10])[0]
            handle.write(json.dumps({"uid": i, "text": f"A {level} {op} problem, case {i}."}) + "\n")


def _sweep(work: Path) -> None:
    (work / "sweep.yaml").write_text(json.dumps({
        "task": TASK, "methods": ["treesynth", "temperature", "evol", "persona"], "models": ["test/fake"],
        "sizes": [20], "seeds": [0], "config": {"tree": {"depth": 2, "width": 3, "pivots": 4},
                                                "synthesis": {"samples_per_call": 5}},
        "treesynth_configs": {"default": {}}, "embedder": "lexical"}))


SPEND = ("calls", "prompt_tokens", "completion_tokens", "cost_usd", "calls_per_1000", "tokens_per_1000")


def _results(name: str, data: bytes) -> bytes:
    """results.jsonl less each cell's spend (it counts calls repeated after a kill: the ledger checks those)."""
    if not name.endswith("results.jsonl"):
        return data
    rows = [json.loads(line) for line in data.decode().splitlines()]
    return json.dumps([{k: v for k, v in row.items() if k not in SPEND} for row in rows]).encode()


def _program(name: str, data: bytes) -> bytes:
    """program.json less wall-clock seconds and the growing calls (redone in-flight calls are the ledger's)."""
    if not name.endswith("program.json"):
        return data
    program = json.loads(data)
    compiled = program["compiled"]
    for key in ("calls", "seconds"):
        compiled.pop(key)
        compiled["grow"].pop(key)
    compiled["grow"].pop("tokens")
    for module in compiled["modules"].values():
        module.pop("seconds")
    return json.dumps(program, sort_keys=True).encode()


def _trials(work: Path) -> bytes:
    """The study's finished trials in order: parameters, diversity and what each generated."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{work / 'tune' / 'study.db'}")
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    return json.dumps([[t.params, t.values[0] if t.values else None, t.state.name,
                        {k: t.user_attrs.get(k) for k in ("samples", "leaves", "nodes", "out", "status")}]
                       for t in finished], sort_keys=True).encode()


SCENARIOS = {
    "run": Scenario("run", ["run", TASK, *FAKE, "--depth", "2", "--width", "4", "--pivots", "6", "-n", "120",
                            "--samples-per-call", "5", "--quiet", "--out", "out"],
                    ["out/samples.jsonl", "out/tree.json", "out/rejected.jsonl"]),
    "balance": Scenario("balance", ["balance", "data.jsonl", "--task", TASK, *FAKE, "--depth", "2", "--width", "4",
                                    "--per-leaf", "40", "--batch-size", "8", "--out", "out"],
                        [f"out/{name}" for name in ("balanced.jsonl", "routing.jsonl", "unrouted.jsonl",
                                                    "rejected.jsonl", "tree.json")], prepare=_skewed),
    "bench": Scenario("bench", ["bench", "sweep.yaml", "--out", "out", "--yes"],
                      ["out/results.jsonl", "out/cells/*/samples.jsonl", "out/cells/*/tree.json"],
                      normalize=_results, prepare=_sweep),
    "compile": Scenario("compile", ["compile", TASK, *FAKE, "--depth", "2", "--width", "4", "--pivots", "4", "-n",
                                    "20", "--samples-per-call", "5", "--module", "leaf", "--budget", "20",
                                    "--out", "out/program.json", "--yes"],
                        ["out/program.json", "out/program-trees/*/samples.jsonl", "out/program-trees/*/tree.json"],
                        normalize=_program),
    "tune": Scenario("tune", ["tune", TASK, *FAKE, "-n", "10", "--trials", "4", "--startup-trials", "2",
                              "--out", "tune", "--yes"],
                     ["tune/trials/*/samples.jsonl", "tune/trials/*/tree.json"], summary=_trials),
}


def _check(root: Path, name: str, kills: int) -> Outcome:
    scenario = SCENARIOS[name]
    outcome = kill_and_resume(root, scenario, kills=kills, seed=14)
    print(record_line(scenario, outcome))
    assert outcome.kills >= max(1, kills // 2), f"{name} finished before most kills: {outcome}"
    for samples in (root / "killed").rglob("*.jsonl"):
        rows = [line for line in samples.read_text().splitlines() if line.strip()]
        ids = [json.loads(line).get("id") for line in rows]
        assert len([i for i in ids if i is not None]) == len({i for i in ids if i is not None}), samples
    return outcome


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_three_kills_anywhere_then_a_resume_give_the_uninterrupted_outputs(tmp_path: Path, name: str) -> None:
    _check(tmp_path, name, kills=3)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_twenty_kills_anywhere_then_a_resume_give_the_uninterrupted_outputs(tmp_path: Path, name: str) -> None:
    _check(tmp_path, name, kills=20)


def test_a_balance_stopped_mid_node_keeps_the_routing_batches_that_came_back(tmp_path: Path) -> None:
    """Each routing batch is stored as it returns: a resume asks no finished batch again (the sum of routing
    calls over both sessions is the uninterrupted run's), and routes every sample as it would have."""
    scenario = SCENARIOS["balance"]
    base, stopped = tmp_path / "base", tmp_path / "stopped"
    for work in (base, stopped):
        work.mkdir()
        scenario.prepare(work)
    run_to_end(base, scenario, attempts=1)
    capped = Scenario("balance", [*scenario.args, "--max-calls", "12"], scenario.compared, prepare=_skewed)
    with pytest.raises(AssertionError, match="did not finish"):  # stopped by the cap, mid-way through a node
        run_to_end(stopped, capped, attempts=1)
    assert sum(call_counts(stopped).values()) == 12
    run_to_end(stopped, scenario, attempts=1)
    assert call_counts(stopped) == call_counts(base)
    assert fingerprints(stopped, scenario) == fingerprints(base, scenario)
