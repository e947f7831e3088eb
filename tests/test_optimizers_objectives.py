"""Per-node objectives: validity gates, diversity terms and GEPA feedback (no LM involved)."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

from treesynth.optimizers.objectives import (
    CoverageObjective,
    CriterionObjective,
    LeafObjective,
    TextEmbedding,
    make_objective,
)
from treesynth.signatures import Coverage, CriterionSplit, ValueGroup

DISTINCT = [
    "A baker sells 24 muffins in the morning and 17 in the afternoon; how many did she sell?",
    "Tom has three boxes of 12 pencils and gives away 9 pencils to friends.",
    "A train travels 60 miles per hour for 2.5 hours; how far does it go?",
    "Maria saves 5 dollars a week for 8 weeks to buy a bicycle costing 45 dollars.",
]


def leaf_example(**labels: Any) -> dspy.Example:
    values = {"task": "math word problems", "subspace": ["operation: addition"], "avoid": [], "count": 4,
              "fields": (), "seed": 1, "own_value": "addition", "sibling_values": ["subtraction", "division"],
              "references": []}
    values.update(labels)
    return dspy.Example(**values).with_inputs("task", "subspace", "avoid", "count", "fields", "seed")


def test_leaf_duplicates_lower_the_score_and_the_feedback_names_them() -> None:
    objective = LeafObjective()
    distinct = objective.judge(leaf_example(), dspy.Prediction(samples=DISTINCT))
    shouted = DISTINCT[0].upper().rstrip("?") + "!!"
    repeated = objective.judge(leaf_example(), dspy.Prediction(samples=[*DISTINCT[:3], shouted]))
    assert distinct.parts["validity"] == 1.0
    assert repeated.score < distinct.score - 0.1
    assert "duplicate" in repeated.feedback
    assert "duplicate" not in distinct.feedback


def test_leaf_validity_gates_diverse_garbage() -> None:
    garbage = dspy.Prediction(samples=["qzx", "wvy", "plo", "mnb"])  # maximally "diverse", but not samples
    verdict = LeafObjective().judge(leaf_example(), garbage)
    assert verdict.score == 0.0
    assert "fewer than 4 words" in verdict.feedback



def test_leaf_number_dumps_and_file_names_are_not_language() -> None:
    # what the 270M base model produced before this check: it scored as "diverse" and was kept as a demo
    garbage = ["2017-12-21 15:18:34 328 315 151 728 1472 1136 554", "consumer-support-questions.json",
               "sum the numbers 1 2 3 4 5 6 7 8 9 10 11 12 now", "Farmer Jo has 12 apples to share."]
    verdict = LeafObjective().judge(leaf_example(), dspy.Prediction(samples=garbage))
    assert verdict.parts["validity"] == pytest.approx(0.25)
    assert "sample 1 has fewer than 4 words" in verdict.feedback  # no word with letters at all
    assert "sample 2 has fewer than 4 words" in verdict.feedback  # one token
    assert "sample 3 is mostly numbers or symbols" in verdict.feedback

def test_leaf_counts_short_batches_avoid_copies_and_sibling_values() -> None:
    objective = LeafObjective()
    short = objective.judge(leaf_example(), dspy.Prediction(samples=DISTINCT[:2]))
    assert short.parts["validity"] == pytest.approx(0.5)
    assert "2 samples returned, 4 requested" in short.feedback
    copied = objective.judge(leaf_example(avoid=[DISTINCT[1].lower()]), dspy.Prediction(samples=DISTINCT))
    assert copied.parts["validity"] == pytest.approx(0.75)
    assert "repeats a sample from `avoid`" in copied.feedback
    off_path = [*DISTINCT[:3], "Use division to split 40 apples among 8 children equally."]
    sibling = objective.judge(leaf_example(), dspy.Prediction(samples=off_path))
    assert sibling.parts["validity"] == pytest.approx(0.75)
    assert "sibling value 'division'" in sibling.feedback


def test_leaf_novelty_against_sibling_leaves() -> None:
    objective = LeafObjective()
    fresh = objective.judge(leaf_example(references=["A farmer plants 30 tulips in 5 equal rows."]),
                            dspy.Prediction(samples=DISTINCT))
    stale = objective.judge(leaf_example(references=list(DISTINCT[:2])), dspy.Prediction(samples=DISTINCT))
    assert stale.parts["novelty"] < fresh.parts["novelty"]
    assert "sibling leaf" in stale.feedback


def test_leaf_structured_samples_are_judged_on_their_fields() -> None:
    records = [{"question": text, "answer": str(i)} for i, text in enumerate(DISTINCT)]
    verdict = LeafObjective().judge(leaf_example(fields=(("question", "q"), ("answer", "a"))),
                                    dspy.Prediction(samples=records))
    assert verdict.parts["validity"] == 1.0 and verdict.score > 0.5


def criterion_example(**values: Any) -> dspy.Example:
    base = {"task": "math", "subspace": [], "pivots": ["p1", "p2", "p3", "p4"], "excluded_criteria": ["setting"],
            "max_groups": 4, "seed": 1}
    base.update(values)
    return dspy.Example(**base).with_inputs(*base)


def split(criterion: str, groups: dict[str, list[int]]) -> dspy.Prediction:
    return dspy.Prediction(split=CriterionSplit(criterion=criterion,
                                                groups=[ValueGroup(value=v, samples=s) for v, s in groups.items()]))


def test_criterion_scores_exclusive_complete_splits_highest() -> None:
    objective = CriterionObjective()
    good = objective.judge(criterion_example(), split("difficulty", {"easy": [1, 2], "hard": [3, 4]}))
    twice = objective.judge(criterion_example(), split("difficulty", {"easy": [1, 2], "hard": [1, 3, 4]}))
    missing = objective.judge(criterion_example(), split("difficulty", {"easy": [1], "hard": [3, 4]}))
    overlap = objective.judge(criterion_example(), split("topic", {"fractions": [1, 2], "fractions and decimals":
                                                                    [3, 4]}))
    assert good.score == 1.0
    assert twice.score == pytest.approx(0.75) and "more than one value" in twice.feedback
    assert missing.score == pytest.approx(0.75) and "not assigned" in missing.feedback
    assert overlap.score < 0.8 and "overlap" in overlap.feedback


@pytest.mark.parametrize(("criterion", "groups", "needle"), [
    ("difficulty", {"easy": [1, 2], "other": [3, 4]}, "vague"),
    ("difficulty", {"Easy": [1, 2], "easy!": [3, 4]}, "duplicate values"),
    ("type of setting", {"farm": [1, 2], "city": [3, 4]}, "repeats the ancestor"),
    ("difficulty", {"easy": [1, 2], "hard": [3, 9]}, "unknown pivot numbers"),
])
def test_criterion_gate_zeroes_unusable_splits(criterion: str, groups: dict[str, list[int]], needle: str) -> None:
    verdict = CriterionObjective().judge(criterion_example(), split(criterion, groups))
    assert verdict.score == 0.0
    assert needle in verdict.feedback


def coverage_example(known: list[str], held_out: list[str]) -> dspy.Example:
    return dspy.Example(task="math", subspace=[], criterion="operation", known_values=known, max_new=8,
                        held_out=held_out, seed=1).with_inputs("task", "subspace", "criterion", "known_values",
                                                               "max_new", "seed")


def added(*values: str) -> dspy.Prediction:
    return dspy.Prediction(coverage=Coverage(new_values=list(values), unbounded=False))


def test_coverage_rewards_new_non_overlapping_values() -> None:
    objective = CoverageObjective()
    example = coverage_example(["addition", "subtraction"], ["multiplication", "division"])
    full = objective.judge(example, added("multiplication", "division"))
    half = objective.judge(example, added("multiplication"))
    dupes = objective.judge(example, added("Addition", "multiplication", "division"))
    nothing = objective.judge(example, added())
    assert full.score == pytest.approx(1.0)
    assert half.score == pytest.approx(0.5 * (0.25 + 0.75 * 0.5))  # half the count, half the held-out recalled
    assert dupes.parts["validity"] == pytest.approx(2 / 3) and "duplicate" in dupes.feedback
    assert nothing.score == 0.0 and "list every missing value" in nothing.feedback
    overlap = objective.judge(example, added("long division", "division"))
    assert overlap.parts["novelty"] < 0.9 and "overlaps" in overlap.feedback



def test_coverage_values_of_another_criterion_recall_nothing() -> None:
    # what the 270M model did with a demo of another task: valid, novel, the right count, and wrong
    objective = CoverageObjective()
    example = coverage_example(["card", "loan", "transfer"], ["deposit", "fees", "login"])
    copied = objective.judge(example, added("strings", "lists", "dictionaries"))
    right = objective.judge(example, added("deposits", "account fees", "mortgage"))
    assert copied.parts["validity"] == 1.0 and copied.parts["recall"] == 0.0
    assert copied.score == pytest.approx(0.25) and "recall 0 of 3" in copied.feedback
    assert right.parts["recall"] == pytest.approx(2 / 3)  # "account fees" contains "fees"; "mortgage" is new
    assert right.score > copied.score

def test_coverage_of_a_complete_list_expects_nothing() -> None:
    verdict = CoverageObjective().judge(coverage_example(["even", "odd"], []), added())
    assert verdict.score == 1.0


def test_objectives_are_gepa_metrics_and_scalar_metrics() -> None:
    objective = make_objective("leaf", TextEmbedding("lexical"))
    pred = dspy.Prediction(samples=DISTINCT)
    out = objective(leaf_example(), pred, None, "leaf.synthesize", None)
    assert isinstance(out, dspy.Prediction) and 0 < out.score <= 1 and out.feedback.startswith("Score")
    assert objective.scalar(leaf_example(), pred) == out.score
    failed = objective(leaf_example(), dspy.Prediction(), None, None, None)
    assert failed.score == 0.0 and "no parseable answer" in failed.feedback
    assert objective.scalar(leaf_example(), None) == 0.0

