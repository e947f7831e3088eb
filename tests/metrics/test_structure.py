"""Structure metrics: leaf distribution, entropy, Gini, coverage, branch shares."""

from __future__ import annotations

import math
from typing import Any

import pytest

from treesynth.metrics.report import render_markdown
from treesynth.metrics.structure import (
    branch_of_path,
    coverage_at_quota,
    gini,
    normalized_entropy,
    size_histogram,
    structure_summary,
    tree_leaves,
)


def node(node_id: str, value: Any, children: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "value": value, "criterion": "c" if children else None, "children": children or [], **extra}


TREE = {
    "task": {"description": "t"},
    "root": node(
        "r",
        None,
        [
            node("a", "easy", [node("a1", "x"), node("a2", "y")]),
            node("b", ["hard", "harder"], [node("b1", "z")], infinite=True),
            node("c", "medium"),
        ],
    ),
}


def brute_gini(values: list[float]) -> float:
    n = len(values)
    mean = sum(values) / n
    return sum(abs(a - b) for a in values for b in values) / (2 * n * n * mean)


@pytest.mark.parametrize("values", [[1, 2, 3, 4], [5, 0, 0, 0], [3, 3, 3], [0, 1, 10, 7, 7, 2]])
def test_gini_matches_the_pairwise_definition(values: list[float]) -> None:
    assert gini(values) == pytest.approx(brute_gini(values))


def test_gini_known_cases() -> None:
    assert gini([4, 4, 4, 4]) == 0.0
    assert gini([0, 0, 0, 8]) == pytest.approx(3 / 4)
    assert gini([]) is None
    assert gini([0, 0]) is None


def test_normalized_entropy() -> None:
    assert normalized_entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert normalized_entropy([9, 0, 0]) == 0.0
    assert normalized_entropy([]) is None
    p = [0.5, 0.25, 0.25]
    assert normalized_entropy([2, 1, 1]) == pytest.approx(-sum(q * math.log(q) for q in p) / math.log(3))


def test_one_leaf_has_no_balance_to_measure() -> None:
    # issue 15 #9: a one-leaf run reported normalised entropy 1.0 and Gini 0.0, i.e. "perfect balance"
    assert normalized_entropy([7]) is None and gini([7]) is None
    tree = {"root": node("r", None, [node("only", ["x", "y", "z"], infinite=True)])}
    s = structure_summary(["only"] * 5, ["x", "y", "x", "z", "y"], tree=tree)
    assert s["leaf_count"] == 1 and s["normalized_entropy"] is None and s["gini"] is None
    report = render_markdown({"embedder": "lexical", "options": {"duplicate_threshold": 0.9, "bleu_max_n": 4},
                              "datasets": [{"name": "one", "kind": "run", "source": "r", "field": "text",
                                            "samples": 5, "structure": s}]})
    assert "normalised leaf entropy n/a, Gini n/a" in report
    assert "| Leaf entropy (normalised) | ↑ | n/a |" in report and "| Leaf Gini | ↓ | n/a |" in report


def test_coverage_at_quota() -> None:
    counts = {"a": 5, "b": 1, "c": 3}
    assert coverage_at_quota(counts) == pytest.approx(2 / 3)  # mean 3: a and c reach it
    assert coverage_at_quota(counts, {"a": 5, "b": 1, "c": 4}) == pytest.approx(2 / 3)
    assert coverage_at_quota(counts, {"a": 6}) == pytest.approx(1 / 3)  # b, c fall back to the mean 3
    assert coverage_at_quota({}) == 0.0


def test_tree_leaves_and_branches() -> None:
    leaves = tree_leaves(TREE)
    assert [(leaf.leaf_id, leaf.branch) for leaf in leaves] == [
        ("a1", "easy"),
        ("a2", "easy"),
        ("b1", "hard | harder"),
        ("c", "medium"),
    ]
    assert [leaf.branch for leaf in tree_leaves({"root": node("r", None)})] == ["root"]
    assert branch_of_path([]) == "root"
    assert branch_of_path([{"criterion": "d", "value": "easy"}, {"criterion": "e", "value": "x"}]) == "easy"


def test_structure_summary_with_tree_counts_empty_leaves() -> None:
    leaves = ["a1"] * 4 + ["a2"] * 2 + ["b1"] * 2
    branches = ["easy"] * 6 + ["hard"] * 2
    s = structure_summary(leaves, branches, tree=TREE, quota={"a1": 2, "a2": 2, "b1": 2, "c": 2})
    assert s["samples"] == 8
    assert s["leaf_count"] == 4 and s["leaves_in_tree"] == 4 and s["leaves_with_samples"] == 3
    assert s["leaf_counts"] == {"a1": 4, "a2": 2, "b1": 2, "c": 0}
    assert s["leaf_size_histogram"] == {"0": 1, "2": 2, "4": 1}
    assert s["coverage_at_quota"] == pytest.approx(3 / 4)
    assert s["quota_source"] == "run.json allocation"
    assert s["gini"] == pytest.approx(brute_gini([4, 2, 2, 0]))
    assert s["normalized_entropy"] == pytest.approx(normalized_entropy([4, 2, 2, 0]))
    assert s["branch_shares"]["easy"] == pytest.approx(0.75)
    assert s["branch_shares"]["hard"] == pytest.approx(0.25)
    assert s["branch_shares"]["medium"] == 0.0
    assert "hard | harder" not in s["branch_shares"], "the infinite pool's label is no branch of its own"
    assert s["samples_per_leaf"] == {"min": 0.0, "mean": 2.0, "median": 2.0, "max": 4.0}


def test_branch_shares_of_an_infinite_first_split() -> None:
    pool = [f"person {c}" for c in "ABCDEF"]
    tree = {"root": node("r", None, [node("p", pool, [node("p1", "x"), node("p2", "y")], infinite=True)])}
    assert [leaf.pool for leaf in tree_leaves(tree)] == [tuple(pool)] * 2
    s = structure_summary(["p1", "p1", "p2"], ["person A", "person C", "person C"], tree=tree)
    assert s["branch_shares"] == pytest.approx({"person C": 2 / 3, "person A": 1 / 3})
    empty = structure_summary([], [], tree=tree)  # no concrete values seen: the pool stays visible as a branch
    assert empty["branch_shares"] == {" | ".join(pool): 0.0}


def test_structure_summary_without_tree_and_unknown_leaves() -> None:
    s = structure_summary(["x", "x", "y"], ["root"] * 3)
    assert s["leaves_in_tree"] is None and s["leaf_count"] == 2
    assert s["coverage_at_quota"] == pytest.approx(0.5)  # mean 1.5: only x
    assert s["quota_source"] == "mean samples per leaf"
    s = structure_summary(["a1", "zz"], ["easy", "?"], tree=TREE)
    assert s["unknown_leaf_samples"] == 1
    with pytest.raises(ValueError, match="same length"):
        structure_summary(["a"], [])


def test_size_histogram() -> None:
    assert size_histogram([3, 1, 3, 0]) == {0: 1, 1: 1, 3: 2}
