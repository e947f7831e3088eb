"""Fingerprint the data files of a fixed-seed ``run``, ``balance`` and baseline on ``test/fake``.

A refactor of the run kernel must not change what a run produces. Run this before and after the change
and compare the printed sha256 lines (``--check FILE`` compares against a saved copy and exits 1 on any
difference)::

    python scripts/golden_outputs.py > /tmp/before.txt        # on the old commit
    python scripts/golden_outputs.py --check /tmp/before.txt  # on the new one

Only the data files are compared (``samples.jsonl``, ``tree.json``, ``balanced.jsonl``, ``routing.jsonl``);
``run.json`` holds timings and versions, so it legitimately differs between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from treesynth import TreeSynth
from treesynth.balance import Balancer, BalanceTarget
from treesynth.baselines import Baseline
from treesynth.config import RunConfig
from treesynth.models import FirstSplit, Task

TASK = Task(description="grade-school math word problems",
            first_split=FirstSplit(criterion="difficulty", values=["easy", "medium", "hard"]))
CONFIG = RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 2, "tree.width": 4,
                                     "tree.pivots": 6, "synthesis.samples_per_call": 5, "seed": 7})


def _skewed(path: Path, n: int = 600) -> Path:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            level = rng.choices(["easy", "medium", "hard"], [85, 12, 3])[0]
            op = rng.choices(["addition", "subtraction", "multiplication"], [70, 20, 10])[0]
            handle.write(json.dumps({"uid": i, "text": f"A {level} {op} problem, case {i}."}) + "\n")
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprints(root: Path) -> dict[str, str]:
    """Run the three kinds of run under ``root`` and return ``name -> sha256`` of their data files."""
    found: dict[str, str] = {}
    TreeSynth(CONFIG.with_overrides({"synthesis.samples": 120})).run(TASK, root / "run")
    for name in ("samples.jsonl", "tree.json"):
        found[f"run/{name}"] = _digest(root / "run" / name)
    Balancer(CONFIG).balance(_skewed(root / "data.jsonl"), TASK, root / "balance", BalanceTarget(per_leaf=20))
    for name in ("balanced.jsonl", "routing.jsonl", "tree.json"):
        found[f"balance/{name}"] = _digest(root / "balance" / name)
    Baseline("persona", CONFIG.with_overrides({"synthesis.samples": 30})).run(TASK, root / "persona")
    found["persona/samples.jsonl"] = _digest(root / "persona" / "samples.jsonl")
    return found


def main() -> int:
    """Print (or ``--check``) the fingerprints."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=Path, help="a saved output of this script to compare against")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = fingerprints(Path(tmp))
    lines = [f"{digest}  {name}" for name, digest in found.items()]
    if args.check is None:
        print("\n".join(lines))
        return 0
    expected = set(args.check.read_text(encoding="utf-8").split("\n")) - {""}
    differ = [line.split("  ")[1] for line in lines if line not in expected]
    print("identical" if not differ else f"differ: {', '.join(differ)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
