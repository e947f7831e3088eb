"""End-to-end: the issue's acceptance command on the fake model, checked against every output file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import leaf_index, read_jsonl

from treesynth.models import normalize

CMD = ["run", "GSM8K-style grade-school math word problems", "--model", "test/fake", "--depth", "3",
       "--width", "4", "-n", "500", "--quiet"]


def treesynth(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treesynth", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def check_run_dir(out: Path, *, n: int, depth: int, width: int) -> None:
    tree = json.loads((out / "tree.json").read_text())
    run = json.loads((out / "run.json").read_text())
    samples = read_jsonl(out / "samples.jsonl")
    assert run["status"] == "complete"
    assert len(samples) == n == run["counts"]["samples"]
    assert len({s["id"] for s in samples}) == n
    assert len({normalize(s["text"]) for s in samples}) == n, "normalized duplicates delivered"
    leaves = leaf_index(tree)
    for sample in samples:
        leaf = leaves[sample["leaf_id"]]
        assert len(sample["path"]) == len(leaf["path"])
        for step, (criterion, value, infinite) in zip(sample["path"], leaf["path"], strict=True):
            assert step["criterion"] == criterion
            assert step["value"] in value if infinite else step["value"] == value

    def walk(node: dict, parent_depth: int) -> None:
        assert node["depth"] == parent_depth + 1 <= depth
        assert len(node["children"]) <= width
        assert (node["criterion"] is None) == (not node["children"])
        for child in node["children"]:
            walk(child, node["depth"])

    walk(tree["root"], -1)
    for key in ("id", "depth", "value", "criterion", "infinite", "pivots", "children"):
        assert key in tree["root"]
    assert set(run["counts"]) >= {"nodes", "leaves", "samples"}
    assert set(run["llm"]) >= {"calls", "prompt_tokens", "completion_tokens"}
    assert run["llm"]["calls"] > 0 and run["llm"]["prompt_tokens"] > 0
    assert run["counts"]["leaves"] == len(leaves)
    assert sum(run["allocation"]["quota"].values()) == n
    assert {"timings", "config", "versions"} <= set(run)


def test_acceptance_command(tmp_path: Path) -> None:
    out = tmp_path / "R"
    done = treesynth(*CMD, "--out", str(out))
    assert done.returncode == 0, done.stderr
    check_run_dir(out, n=500, depth=3, width=4)
    assert "complete: 500/500" in done.stdout
    # the same command again is a no-op resume: no new LLM calls, same samples
    before = (out / "samples.jsonl").read_text()
    calls = json.loads((out / "run.json").read_text())["llm"]["calls"]
    again = treesynth(*CMD, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / "samples.jsonl").read_text() == before
    assert json.loads((out / "run.json").read_text())["llm"]["calls"] == calls
    assert again.stdout.startswith("already complete, nothing to do: 500/500 samples")


def test_tree_show_formats(tmp_path: Path) -> None:
    out = tmp_path / "R"
    assert treesynth("run", "recipes for weeknight dinners", "--model", "test/fake", "-n", "20", "--depth", "2",
                     "--out", str(out), "-q").returncode == 0
    text = treesynth("tree", "show", str(out))
    assert text.returncode == 0 and text.stdout.startswith("(root)")
    mermaid = treesynth("tree", "show", str(out / "tree.json"), "--format", "mermaid")
    assert mermaid.stdout.startswith("graph TD") and "-->" in mermaid.stdout
    as_json = treesynth("tree", "show", str(out), "--format", "json")
    assert json.loads(as_json.stdout)["root"]["id"] == "root"


def tree_calls(run: dict) -> int:
    return sum(row["calls"] for row in run["llm"]["by_stage"] if row["stage"] != "leaf")


def test_a_finished_run_is_not_redone_and_grows_with_a_larger_n(tmp_path: Path) -> None:
    out = tmp_path / "R"
    base = ["run", "recipes for weeknight dinners", "--model", "test/fake", "--depth", "2", "--width", "3",
            "--out", str(out)]
    assert treesynth(*base, "-n", "20", "-q").returncode == 0
    first = read_jsonl(out / "samples.jsonl")
    calls = json.loads((out / "run.json").read_text())["llm"]["calls"]
    first_tree_calls = tree_calls(json.loads((out / "run.json").read_text()))
    again = treesynth(*base, "-n", "20")  # not quiet: a finished run draws no progress either
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already complete, nothing to do: 20/20 samples") and again.stderr == ""
    assert json.loads((out / "run.json").read_text())["llm"]["calls"] == calls
    grown = treesynth(*base, "-n", "30")
    assert grown.returncode == 0, grown.stderr
    assert grown.stdout.startswith("complete: 30/30 samples")
    assert "resumed: " in grown.stderr and "20 samples" in grown.stderr and "extending 20 -> 30 samples" in grown.stderr
    check_run_dir(out, n=30, depth=2, width=3)
    samples = read_jsonl(out / "samples.jsonl")
    assert {s["id"] for s in first} <= {s["id"] for s in samples}, "a sample of the finished run was lost"
    run = json.loads((out / "run.json").read_text())
    assert run["sessions"] == 3 and run["reused"]["samples"] == 20 and run["reused"]["target"] == 20
    assert tree_calls(run) == first_tree_calls, "the tree was grown again"
    smaller = treesynth(*base, "-n", "10")
    assert smaller.returncode == 2 and smaller.stderr.strip().splitlines() == [
        f"error: --out {out} holds 30 samples already, more than -n 10; use -n 30 or more (a larger -n extends the "
        "run), or another --out"]


def test_a_changed_tree_setting_is_named_before_any_progress_is_drawn(tmp_path: Path) -> None:
    out = tmp_path / "R"
    base = ["run", "poems", "--model", "test/fake", "--depth", "1", "-n", "5", "--out", str(out)]
    assert treesynth(*base, "--width", "4", "-q").returncode == 0
    changed = treesynth(*base, "--width", "6")  # not quiet: the progress display must not start
    assert changed.returncode == 2
    assert changed.stderr.strip().splitlines() == [
        f"error: --out {out} holds a run with tree.width 4, not 6; use another --out, or --width 4 to resume it"]
