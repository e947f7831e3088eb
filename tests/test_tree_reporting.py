"""Issue 15 #1, #9, #10: degenerate trees are reported, not hidden: a split that collapsed into one infinite
child (CLI warning, run.json, `tree show`), "1 leaf", leaf ids in the text tree, n/a balance for one leaf."""

from __future__ import annotations

import json
from pathlib import Path

from test_run_e2e import treesynth

from treesynth.record import Counts
from treesynth.wording import plural

ONE_LEAF = ["run", "riddles about the sea", "--model", "test/fake", "--depth", "1", "--width", "2", "-n", "6"]
"""Width 2 and every fake criterion has more values: the root's split becomes one infinite child, one leaf."""


def test_a_collapsed_split_is_reported_in_output_run_json_and_tree_show(tmp_path: Path) -> None:
    out = tmp_path / "r"
    done = treesynth(*ONE_LEAF, "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert "complete: 6/6 samples, 1 leaf, 2 nodes, " in done.stdout  # not "1 leaves"
    assert ("warning: 1 split became a single infinite child (more values than --width 2, or an unbounded "
            "criterion)") in done.stderr
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["leaves"] == 1 and counts["infinite_splits"] == 1
    tree = json.loads((out / "tree.json").read_text())
    (child,) = tree["root"]["children"]
    shown = treesynth("tree", "show", str(out))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "⚠ infinite split" in lines[1] and f"leaf {child['id']}" in lines[1] and "[6/6 samples]" in lines[1]


def test_text_tree_shows_every_leaf_id_and_no_mark_without_infinite_splits(tmp_path: Path) -> None:
    out = tmp_path / "r"
    done = treesynth("run", "riddles about the sea", "--model", "test/fake", "--depth", "1", "--width", "8",
                     "-n", "12", "--samples-per-call", "1", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    assert json.loads((out / "run.json").read_text())["counts"]["infinite_splits"] == 0
    shown = treesynth("tree", "show", str(out)).stdout
    tree = json.loads((out / "tree.json").read_text())
    ids = [child["id"] for child in tree["root"]["children"]]
    assert len(ids) > 1 and all(f"leaf {leaf_id}" in shown for leaf_id in ids)
    assert "⚠" not in shown


def test_one_leaf_run_evaluates_to_na_balance(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert treesynth(*ONE_LEAF, "--out", str(out), "-q").returncode == 0
    done = treesynth("eval", str(out), "--embedder", "lexical", "--no-plots")
    assert done.returncode == 0, done.stderr
    structure = json.loads((out / "eval" / "metrics.json").read_text())["datasets"][0]["structure"]
    assert structure["normalized_entropy"] is None and structure["gini"] is None  # not 1.0 / 0.0
    assert "normalised leaf entropy n/a, Gini n/a" in (out / "eval" / "report.md").read_text()


def test_plural() -> None:
    assert [plural(n, "leaf") for n in (0, 1, 2)] == ["0 leaves", "1 leaf", "2 leaves"]
    assert plural(1, "LLM call") == "1 LLM call" and plural(3, "node") == "3 nodes"
    assert "infinite_splits" in Counts.model_fields
