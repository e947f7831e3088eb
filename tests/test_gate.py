"""The sample gate: schema debris and echoes are rejected (with a reason), real samples pass, and runs
store what it rejected instead of accepting it."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import dspy
import pytest
from support import read_jsonl

from treesynth.balance import Balancer, BalanceTarget
from treesynth.config import RunConfig
from treesynth.gate import MAX_CHARS, SampleGate, check_sample
from treesynth.models import FirstSplit, LeafWork, Task
from treesynth.pipeline import TreeSynth
from treesynth.store import DB_NAME, RunStore
from treesynth.synthesis.filler import SynthesisSource
from treesynth.tree.modules import PivotGenerator

TASK = "GSM8K-style grade-school math word problems"
SUBSPACE = ["operation: addition", "difficulty: easy"]
FIELDS = ("question", "answer")

DEBRIS = [  # what a small local model returned instead of samples, and the reason the gate gives
    ("items", "is a schema keyword"),
    ("minItems", "is a schema keyword"),
    ("text 0", "has fewer than 4 words"),
    ("A", "has fewer than 4 words"),
    ("B", "has fewer than 4 words"),
    ("5", "has fewer than 4 words"),
    ("7" * 250, "has fewer than 4 words"),
    ("textbook.book", "is a field or path name"),
    ("required.0", "is a schema keyword"),
    ("textbook", "has fewer than 4 words"),
    ('{"type": "array"}', "is a JSON fragment"),
    ("Alex, " * 40 + "Alex...", "is repetitive"),
    ("Alex, Alex, Alex, Alex...", "is repetitive"),
    (TASK, "echoes the task"),
    ("Task: GSM8K-style grade-school math word problems.", "echoes the task"),
    ("operation: addition", "echoes a constraint"),
    ("Constraints: operation: addition; difficulty: easy", "echoes a constraint"),
    ("task, subspace, avoid, samples", "echoes the prompt"),
    ("Your input fields are: task, subspace", "echoes the prompt"),
    ('{"type": "array", "items": {"type": "string"}', "is a schema keyword"),  # a truncated schema
    ("$defs", "is a schema keyword"),
    ("items[0]", "is a schema keyword"),
    ("sample_text", "is a field or path name"),
    ("answer", "is a field or path name"),
    ("2017-12-21 15:18:34 328 315 151 728 1472 1136 554", "has fewer than 4 words"),
    ("sum the numbers 1 2 3 4 5 6 7 8 9 10 11 12 now", "is mostly numbers or symbols"),
    ("word " * 1000, f"is longer than {MAX_CHARS} characters"),
]

REAL = [
    "A farmer has 15 chickens. If 7 are sold, how many chickens does the farmer have left?",
    "Tom buys three red apples.",
    "Find $x$ if $2x^2 + 3x - 5 = 0$.",
    "Mia adds 12 and 30 marbles to her jar; how many marbles are there now?",  # mentions the constraint's topic
    # what the fake model writes: random words, a number and the subspace constraints
    "Apple basket train garden river coin ticket marble pencil #123456 (operation: addition; difficulty: easy).",
    "APPLE BASKET TRAIN GARDEN RIVER COIN TICKET MARBLE PENCIL #123456 (OPERATION: ADDITION; DIFFICULTY: EASY)!!",
]


@pytest.mark.parametrize(("sample", "reason"), DEBRIS, ids=[d[:24] for d, _ in DEBRIS])
def test_debris_is_rejected_with_a_reason(sample: str, reason: str) -> None:
    assert check_sample(sample, task=TASK, subspace=SUBSPACE, fields=FIELDS) == reason


@pytest.mark.parametrize("sample", REAL)
def test_real_samples_pass(sample: str) -> None:
    assert check_sample(sample, task=TASK, subspace=SUBSPACE) is None


def test_a_sample_that_is_the_prompt_echoed_is_rejected() -> None:
    """The whole synthesis prompt sent back as a sample (fault catalogue, issue 14): its field markers give it
    away even though the avoid list and the closing instruction leave enough words to pass the other rules."""
    prompt = ("[[ ## task ## ]]\nGSM8K-style grade-school math word problems\n\n[[ ## subspace ## ]]\n"
              "1. character name: person R\n2. unit of measure: kilograms\n\n[[ ## avoid ## ]]\n(none)\n\n"
              "Respond with the JSON object (keys: `batch`) and nothing else.")
    subspace = ["character name: person R", "unit of measure: kilograms"]
    assert check_sample(prompt, task="GSM8K-style grade-school math word problems", subspace=subspace) == \
        "echoes the prompt"


def test_structured_samples_need_every_field_and_language() -> None:
    gate = SampleGate(task=TASK, fields=FIELDS)
    question = "A farmer has 15 chickens; 7 are sold. How many are left?"
    assert gate.check({"question": question, "answer": "8"}, SUBSPACE) is None
    assert gate.check({"question": question, "answer": "  "}, SUBSPACE) == "has an empty field 'answer'"
    assert gate.check({"question": question}, SUBSPACE) == "has an empty field 'answer'"
    assert gate.check({"question": "question", "answer": "answer"}, SUBSPACE) == "echoes the prompt"
    assert gate.check({"question": "items", "answer": "5"}, SUBSPACE) == "is a schema keyword"


def test_an_echo_is_judged_by_what_is_left_without_it() -> None:
    gate = SampleGate(task=TASK)
    assert gate.check("Write GSM8K-style grade-school math word problems now", SUBSPACE) == "echoes the task"
    assert gate.check("Add 3 and 4 (operation: addition; difficulty: easy).", SUBSPACE) == "echoes a constraint"
    with_content = "Operation: addition. Sam has 4 pears and finds 5 more; how many pears does he have?"
    assert gate.check(with_content, SUBSPACE) is None
    assert check_sample("Tom buys three red apples.", task=TASK, min_words=6) == "has fewer than 6 words"


# -- runs on the fake model -----------------------------------------------------------------------------

def fake_config(**overrides: Any) -> RunConfig:
    base = {"model.model": "test/fake", "tree.depth": 2, "tree.width": 3, "tree.pivots": 4,
            "synthesis.samples": 40, "synthesis.samples_per_call": 4}
    return RunConfig().with_overrides({**base, **overrides})


LEAF_DEBRIS = ["items", "minItems", "text 0", "A", "9" * 250, "textbook.book", "required.0", '{"type": "array"}',
               ", ".join(["Alex"] * 30), TASK, "<constraint>"]


def inject_leaf_debris(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the first sample of every leaf-synthesis call debris (in turn); return the debris injected."""
    injected: list[str] = []
    original = SynthesisSource.__call__

    async def with_debris(self: SynthesisSource, work: LeafWork, subspace: list[str], avoid: list[str], lm: Any,
                          config: dict[str, Any]) -> Any:
        pred = await original(self, work, subspace, avoid, lm, config)
        debris = LEAF_DEBRIS[len(injected) % len(LEAF_DEBRIS)]
        if debris == "<constraint>":
            debris = subspace[-1] if subspace else self.task.description
        injected.append(debris)
        return dspy.Prediction(samples=[debris, *list(pred.samples)[1:]])

    monkeypatch.setattr(SynthesisSource, "__call__", with_debris)
    return injected


def test_run_rejects_leaf_debris_stores_it_and_still_delivers_exactly_n(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    injected = inject_leaf_debris(monkeypatch)
    out = tmp_path / "r"
    result = TreeSynth(fake_config()).run(TASK, out)
    samples = read_jsonl(out / "samples.jsonl")
    assert result.status == "complete" and len(samples) == 40 == result.summary["counts"]["samples"]
    assert injected, "no debris was injected"
    for sample in samples:
        assert sample["text"] not in injected
        subspace = [f"{step['criterion']}: {step['value']}" for step in sample["path"]]
        assert check_sample(sample["text"], task=TASK, subspace=subspace) is None
    rejected = read_jsonl(out / "rejected.jsonl")
    assert Counter(row["text"] for row in rejected) == Counter(injected)  # every debris, and nothing else
    assert all(row["stage"] == "leaf" and row["leaf_id"] and row["reason"] for row in rejected)
    assert len(injected) >= len(LEAF_DEBRIS), "every kind of debris was injected at least once"
    reasons = {row["text"]: row["reason"] for row in rejected}
    assert reasons["items"] == reasons["required.0"] == "is a schema keyword"
    assert reasons["textbook.book"] == "is a field or path name"
    assert reasons[TASK] == "echoes the task" and reasons[", ".join(["Alex"] * 30)] == "is repetitive"
    assert "echoes a constraint" in reasons.values()
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["rejected"] == len(rejected)
    assert run["counts"]["rejected_by_reason"] == dict(Counter(row["reason"] for row in rejected))
    with sqlite3.connect(out / DB_NAME) as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())
    assert statuses["rejected"] == len(rejected)


PIVOT_DEBRIS = ["minItems", "textbook.book", '{"type": "array"}', "text 0"]


def test_pivots_are_gated_and_a_node_without_two_good_pivots_stays_a_leaf(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    original = PivotGenerator.aforward

    async def debris_pivots(self: PivotGenerator, task: str, subspace: list[str], count: int, **call: Any) -> Any:
        pred = await original(self, task, subspace, count, **call)
        pivots = list(pred.pivots)
        if subspace:  # below the root: nothing usable
            return dspy.Prediction(pivots=PIVOT_DEBRIS[:count])
        return dspy.Prediction(pivots=["required.0", *pivots[1:]])  # the root: one bad pivot of four

    monkeypatch.setattr(PivotGenerator, "aforward", debris_pivots)
    out = tmp_path / "r"
    result = TreeSynth(fake_config()).run(TASK, out)
    assert result.status == "complete" and result.summary["counts"]["samples"] == 40
    tree = json.loads((out / "tree.json").read_text())
    root = tree["root"]
    assert root["children"] and len(root["pivots"]) == 3 and "required.0" not in root["pivots"]
    below = root["children"]
    for node in below:
        assert not node["children"] and node["pivots"] == []
        assert node["leaf_reason"].startswith("pivots failed the sample gate: 0 of 4 passed")
    rejected = read_jsonl(out / "rejected.jsonl")
    assert all(row["stage"] == "pivots" for row in rejected)
    assert [row["text"] for row in rejected if row["node_id"] == "root"] == ["required.0"]
    assert len(rejected) == 1 + len(PIVOT_DEBRIS) * len(below)
    assert {row["node_id"] for row in rejected} == {"root", *(node["id"] for node in below)}
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["rejected"] == len(rejected)
    assert run["counts"]["rejected_by_reason"] == dict(Counter(row["reason"] for row in rejected))
    assert run["counts"]["early_leaves"] == len(below)


def test_a_store_made_before_the_gate_gains_the_reason_column(tmp_path: Path) -> None:
    out = tmp_path / "old"
    out.mkdir()
    with sqlite3.connect(out / DB_NAME) as db:
        db.execute("CREATE TABLE candidates(leaf_id TEXT NOT NULL, call_index INTEGER NOT NULL, position INTEGER "
                   "NOT NULL, norm TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'new', "
                   "PRIMARY KEY(leaf_id, call_index, position))")
        db.execute("INSERT INTO candidates VALUES('leaf', 0, 0, 'old sample', '{\"id\": \"s\"}', 'new')")
    store = RunStore.open(out, {"task": "t"})
    try:
        store.save_leaf_call("leaf", 1, [("", {"id": "x", "text": "items"}, "is a schema keyword")])
        assert store.accept("leaf", 5) == 1  # the old candidate; never the rejected one
        assert [row["text"] for row in store.rejected()] == ["items"]
        assert store.rejection_stats() == {"is a schema keyword": 1}
    finally:
        store.close()


def test_balance_top_up_is_gated_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": f"Sam has {i} apples and buys {i + 2} more; how many now?"}) + "\n"
                            for i in range(12)))
    injected = inject_leaf_debris(monkeypatch)
    cfg = RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 1, "tree.width": 3,
                                      "tree.pivots": 4, "synthesis.samples_per_call": 4})
    task = Task(description=TASK, first_split=FirstSplit(criterion="difficulty", values=["easy", "medium", "hard"]))
    result = Balancer(cfg).balance(data, task, tmp_path / "out", BalanceTarget(per_leaf=10))
    assert result.summary["status"] == "complete" and injected
    rejected = read_jsonl(tmp_path / "out" / "rejected.jsonl")
    assert Counter(row["text"] for row in rejected) == Counter(injected)
    assert result.summary["counts"]["rejected"] == len(rejected)
    assert result.summary["counts"]["rejected_by_reason"] == dict(Counter(row["reason"] for row in rejected))
    balanced = read_jsonl(tmp_path / "out" / "balanced.jsonl")
    assert not {row["text"] for row in balanced} & set(injected)


def test_one_gate_judges_each_subspace_by_its_own_constraints_however_many_it_has_seen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import treesynth.gate as gate_module

    monkeypatch.setattr(gate_module, "_CONSTRAINT_CACHE", 3)  # the memo starts over often
    gate = SampleGate(task="grade-school math word problems")
    text = "Tom has apples operation addition setting farm"
    for round_ in range(3):
        for n in range(5):
            assert gate.check(text, [f"difficulty: level {round_}{n}"]) is None
            assert gate.check(text, ["operation: addition", "setting: farm"]) == "echoes a constraint"
            assert gate.check("operation: addition, the farm setting", ["setting: the farm"]) is None
            assert gate.check("operation: addition, the farm setting",
                              ["operation: addition", "setting: the farm"]) == "echoes a constraint"
    assert len(gate._constraints) <= 3
