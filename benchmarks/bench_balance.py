"""Balancing cost: LLM calls per routed sample per level, on a skewed 10,000-record dataset (fake model).

    python benchmarks/bench_balance.py [--records 10000] [--batch-size 20]

Prints the routing calls, the routing decisions (one per sample per level it was routed at), their
ratio side by side with the unbatched reference code's 1 call per sample per level, and the leaf
distribution before and after.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from treesynth.balance import Balancer, BalanceTarget
from treesynth.config import RunConfig
from treesynth.models import FirstSplit, Task
from treesynth.wording import plural


def skewed(path: Path, n: int) -> None:
    rng = random.Random(0)
    with path.open("w") as handle:
        for i in range(n):
            level = rng.choices(["easy", "medium", "hard"], [85, 12, 3])[0]
            op = rng.choices(["addition", "subtraction", "multiplication", "division"], [70, 20, 5, 5])[0]
            handle.write(json.dumps({"text": f"A {level} {op} word problem, number {i}."}) + "\n")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=20)
    args = parser.parse_args()
    task = Task(description="grade-school math word problems",
                first_split=FirstSplit(criterion="difficulty", values=["easy", "medium", "hard"]))
    config = RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 3, "tree.width": 4,
                                         "concurrency": 16})
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        skewed(data, args.records)
        started = time.perf_counter()
        summary = Balancer(config, batch_size=args.batch_size).balance(
            data, task, Path(tmp) / "out", BalanceTarget(per_leaf=100)).summary
        seconds = time.perf_counter() - started
    routing, before, after = summary["routing"], summary["distribution"]["before"], summary["distribution"]["after"]
    print(f"records {args.records:,}, batch {args.batch_size}: {routing['calls']} routing calls for "
          f"{routing['decisions']:,} decisions = {routing['calls_per_sample_per_level']:.4f} calls per sample per "
          f"level ({1 / max(routing['calls_per_sample_per_level'], 1e-9):.0f}x fewer than one call per sample per "
          f"level); {seconds:.1f} s")
    print(f"{plural(summary['counts']['leaves'], 'leaf')}: normalized entropy {_fmt(before['normalized_entropy'])} "
          f"-> {_fmt(after['normalized_entropy'])}, gini {_fmt(before['gini'])} -> {_fmt(after['gini'])}, empty leaves "
          f"{before['empty_leaves']} -> {after['empty_leaves']}; kept {summary['counts']['kept']}, synthesized "
          f"{summary['counts']['synthesized']}, unrouted {summary['counts']['unrouted']}")


if __name__ == "__main__":
    main()
