"""Structural checks on proposed splits."""

from __future__ import annotations

from treesynth.signatures import CriterionSplit, ValueGroup
from treesynth.tree.checks import merge_values, repeats_ancestor, split_problems


def split(criterion: str, *groups: tuple[str, list[int]]) -> CriterionSplit:
    return CriterionSplit(criterion=criterion, groups=[ValueGroup(value=v, samples=s) for v, s in groups])


def test_valid_split_has_no_problems() -> None:
    good = split("difficulty", ("easy", [1, 3]), ("hard", [2, 4]))
    assert split_problems(good, pivot_count=4, ancestors=["topic"]) == []


def test_every_violation_is_reported() -> None:
    cases = {
        "repeats the ancestor": split("Difficulty level", ("easy", [1]), ("hard", [2])),
        "duplicate values": split("tone", ("Formal.", [1]), ("formal", [2])),
        "vague values": split("tone", ("formal", [1]), ("Other", [2])),
        "more than one value": split("tone", ("formal", [1, 2]), ("casual", [2])),
        "not assigned": split("tone", ("formal", [1]), ("casual", [])),
        "unknown pivot numbers": split("tone", ("formal", [1, 2]), ("casual", [7])),
        "empty value": split("tone", ("formal", [1]), ("  ", [2])),
        "fewer than two distinct": split("tone", ("formal", [1]), ("FORMAL", [2])),
    }
    for needle, case in cases.items():
        problems = split_problems(case, pivot_count=2, ancestors=["difficulty"])
        assert any(needle in p for p in problems), (needle, problems)


def test_repeats_ancestor_ignores_generic_words_only() -> None:
    assert repeats_ancestor("Type of operation", ["operation"]) == "operation"
    assert repeats_ancestor("operation count", ["operation"]) is None


def test_merge_values_normalizes_and_drops_vague() -> None:
    assert merge_values(["Easy"], ["easy.", "Hard", "other", "", "hard!"]) == ["Easy", "Hard"]
