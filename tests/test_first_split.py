"""Issue 15 #1: the README's `first_split` example, run as written, gives one balanced branch per value."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from support import read_jsonl
from test_run_e2e import treesynth

ROOT = Path(__file__).resolve().parents[1]


def readme_task_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """The README's example task file (the YAML block with a `first_split`), written as is."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    (text,) = [block for block in blocks if "first_split:" in block]
    path = tmp_path / "math.yaml"
    path.write_text(text, encoding="utf-8")
    return path, yaml.safe_load(text)["first_split"]["values"]


@pytest.mark.parametrize("width", [None, 2])
def test_readme_first_split_gives_seven_balanced_branches(tmp_path: Path, width: int | None) -> None:
    task, subjects = readme_task_file(tmp_path)
    assert len(subjects) == 7
    out = tmp_path / "math"
    shape = [] if width is None else ["--width", str(width)]  # default width 4: fewer than 7 values
    done = treesynth("run", str(task), "--model", "test/fake", "-n", "100", *shape, "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("complete: 100/100 samples")
    root = json.loads((out / "tree.json").read_text())["root"]
    assert [child["value"] for child in root["children"]] == subjects
    assert not any(child["infinite"] for child in root["children"])
    shares = Counter(sample["path"][0]["value"] for sample in read_jsonl(out / "samples.jsonl"))
    assert set(shares) == set(subjects)
    assert all(abs(count - 100 / 7) <= 2 for count in shares.values()), shares
    run = json.loads((out / "run.json").read_text())
    subtree_quota = {child["value"]: sum(leaf["quota"] for leaf in leaves(child)) for child in root["children"]}
    assert sorted(subtree_quota.values()) == [14, 14, 14, 14, 14, 15, 15]
    assert run["counts"]["samples"] == 100


def leaves(node: dict) -> list[dict]:
    if not node["children"]:
        return [node]
    return [leaf for child in node["children"] for leaf in leaves(child)]
