"""Near-duplicate removal on the embedded default model: a real run whose near-duplicates are rejected and
replaced (``@pytest.mark.embedded``; run it under ``flock /tmp/cpu-heavy.lock``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import read_jsonl
from test_embedded_e2e import TASK, _quiet_env
from test_run_e2e import treesynth

from treesynth.neardup import jaccard, near_duplicate_rate, shingle_hashes

THRESHOLD = 0.4
"""Low enough that a 12-sample run of the 1.5B model repeats itself: its problems share templates ("There are 5
oranges in the basket. If you take away 2 ..."), and the first calls of its six leaves alone hold four pairs at
0.4 (one at 0.5, none at 0.8: at the default, a 100-sample run caught 3, see benchmarks/RESULTS.md)."""


@pytest.mark.embedded
def test_real_run_removes_near_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "nd"
    done = treesynth("run", TASK, "-n", "12", "--near-dup", str(THRESHOLD), "--out", str(out), "-q",
                     env=_quiet_env(tmp_path), timeout=1500)
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    samples = read_jsonl(out / "samples.jsonl")
    assert run["status"] == "complete" and len(samples) == run["counts"]["samples"] == 12  # replaced: exact n
    assert run["config"]["synthesis"]["near_dup"] == THRESHOLD
    near = [r for r in read_jsonl(out / "rejected.jsonl") if r["reason"] == "near-duplicate"]
    assert run["counts"]["near_duplicates"] == len(near) >= 1, "the model repeated itself and was caught"
    by_id = {s["id"]: s["text"] for s in samples}
    for line in near:
        kept = by_id[line["duplicate_of"]]  # it collides with a delivered sample
        assert jaccard(shingle_hashes(line["text"]), shingle_hashes(kept)) >= THRESHOLD
    assert near_duplicate_rate([s["text"] for s in samples], THRESHOLD) == 0.0
