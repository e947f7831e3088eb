"""The README's first command on the embedded model (no --model, no key, no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import leaf_index, read_jsonl
from test_run_e2e import treesynth

from treesynth.models import normalize


@pytest.mark.embedded
def test_default_run_on_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "gsm-embedded"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["DSPY_CACHEDIR"] = str(tmp_path / "dspy-cache")  # a cold cache: every call really runs the model
    done = treesynth("run", "GSM8K-style grade-school math word problems", "-n", "8", "--out", str(out), "-q",
                     env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["config"]["model"]["model"] == "local/gemma-3-270m"
    assert run["llm"]["calls"] > 0 and run["llm"]["completion_tokens"] > 0
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == 8 == len({normalize(s["text"]) for s in samples})
    leaves = leaf_index(json.loads((out / "tree.json").read_text()))
    assert all(s["leaf_id"] in leaves for s in samples)
