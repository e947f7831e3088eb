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
