"""A whole TreeSynth run against its own critical path, on a fake provider with 200 ms latency.

The shape is the one on which the TreeSynth reference code takes 19.1 s on this machine (511 calls):
depth 4, width 4, ``-n 2560``, 10 samples per call, concurrency 64. The critical path of that run is one
chain of tree calls per level (pivots, criterion, coverage) plus one leaf round:
``(depth * 3 + 1) * latency`` = 2.6 s at depth 4 and 200 ms. For each seed, in one process (the fake server
runs in its own), the benchmark prints ``run.json``'s ``timings.seconds_total``, the critical path and their
ratio, the LLM calls, the tree phase (session start to the tree's last node) and the leaf tail (tree done to
the end), the client CPU seconds and CPU milliseconds per call, and the leaf calls beyond one round (top-ups).

    python benchmarks/bench_critical_path.py [--seeds 0 1 2] [--latency-ms 200] [--set executor.kind=ray ...]

``--set key=value`` applies further :meth:`RunConfig.with_overrides` keys (values read as YAML), so another
executor or setting can be measured on the same shape. ``--profile FILE`` writes a cProfile of the seeds'
runs. Results go to ``benchmarks/results/critical_path.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "benchmark-not-a-secret")

from _fake_server import fake_server_process

TASK = "GSM8K-style grade-school math word problems"
SHAPE = {"tree.depth": 4, "tree.width": 4, "synthesis.samples": 2560, "synthesis.samples_per_call": 10,
         "concurrency": 64}


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as overrides (values read as YAML: numbers, booleans, null, strings)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE (e.g. executor.kind=ray), not {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


class Clock:
    """Time stamps of one run, taken from the pipeline's progress callback."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tree_done: float | None = None
        self.first_sample: float | None = None

    def __call__(self, progress: Any) -> None:
        now = time.perf_counter()
        if self.tree_done is None and progress.tree_done:
            self.tree_done = now
        if self.first_sample is None and progress.samples > 0:
            self.first_sample = now


def tree_chain(out: Path) -> int:
    """Round trips on the tree's longest root-to-leaf chain of expansions (a node's pivots, criterion and coverage
    calls run one after another, and a child starts after its parent). A criterion call is two round trips
    (propose, then label the pivots); a retry is one more."""
    import sqlite3
    from collections import Counter

    trips: Counter[str] = Counter()
    with sqlite3.connect(out / "treesynth.db") as db:
        for node, stage, n in db.execute("SELECT node_id, stage, SUM(1 + retries) FROM calls WHERE stage != 'leaf' "
                                         "GROUP BY node_id, stage"):
            trips[node] += int(n) * (2 if stage == "criterion" else 1)

    def walk(node: dict[str, Any]) -> int:
        return trips[node["id"]] + max((walk(child) for child in node.get("children") or ()), default=0)

    return walk(json.loads((out / "tree.json").read_text())["root"])


def leaf_rounds(out: Path, per_call: int) -> dict[str, int]:
    """Leaf calls, the calls one round per leaf needs (``ceil(quota / k)``), and the top-up calls beyond them."""
    import sqlite3

    quotas = (run_json := json.loads((out / "run.json").read_text()))["allocation"]["quota"]
    needed = sum(math.ceil(q / per_call) for q in quotas.values())
    with sqlite3.connect(out / "treesynth.db") as db:
        calls = db.execute("SELECT COUNT(*) FROM leaf_calls").fetchone()[0]
        multi = db.execute("SELECT COUNT(*) FROM (SELECT leaf_id FROM leaf_calls GROUP BY leaf_id "
                           "HAVING COUNT(*) > 1)").fetchone()[0]
    return {"leaves": run_json["counts"]["leaves"], "leaf_calls": calls, "first_round_calls": needed,
            "top_up_calls": calls - needed, "leaves_topped_up": multi}


BREAKDOWN = {  # label -> (module, owner, method): synchronous steps whose CPU time is summed (nested ones excluded)
    "sample gate": ("treesynth.gate", "SampleGate", "check"),
    "near-dup screen": ("treesynth.neardup", "NearDupScreen", "check"),
    "near-dup index add": ("treesynth.neardup", "NearDupScreen", "admit"),
    "store accept (sqlite)": ("treesynth.store", "RunStore", "accept"),
    "store save call": ("treesynth.store", "RunStore", "save_leaf_call"),
    "store ledger": ("treesynth.store", "RunStore", "record_call"),
    "candidate ids": ("treesynth.synthesis.caller", "SourceCaller", "_candidate"),
    "adapter format": ("treesynth.providers.adapter", "MemoJSONAdapter", "format"),
    "adapter parse": ("treesynth.providers.adapter", "MemoJSONAdapter", "parse"),
    "response format": ("treesynth.providers.adapter", "MemoJSONAdapter", "_prepare_response_format"),
    "progress callbacks": ("treesynth.pipeline", "TreeSynth", "_count_samples"),
    "exports": ("treesynth.pipeline", "TreeSynth", "_export"),
}


GC = "garbage collection"


class CpuBreakdown:
    """CPU seconds spent inside each :data:`BREAKDOWN` step (a step's time excludes the steps nested in it)."""

    def __init__(self) -> None:
        import importlib

        self.seconds: dict[str, float] = dict.fromkeys((*BREAKDOWN, GC), 0.0)
        self._stack: list[float] = []
        self._gc_started = 0.0
        for label, (module, owner, name) in BREAKDOWN.items():
            cls = getattr(importlib.import_module(module), owner)
            setattr(cls, name, self._timed(label, getattr(cls, name)))
        gc.callbacks.append(self._collecting)

    def _collecting(self, phase: str, info: dict[str, Any]) -> None:
        """Python's cyclic garbage collector, wherever it runs (not counted in the step it interrupts)."""
        if phase == "start":
            self._gc_started = time.process_time()
            return
        spent = time.process_time() - self._gc_started
        self.seconds[GC] += spent
        if self._stack:
            self._stack[-1] += spent

    def _timed(self, label: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            self._stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                nested = self._stack.pop()
                self.seconds[label] += spent - nested
                if self._stack:
                    self._stack[-1] += spent

        return timed

    def take(self) -> dict[str, float]:
        """The sums since the last call, rounded; starts them over."""
        found = {label: round(value, 3) for label, value in self.seconds.items()}
        self.seconds = dict.fromkeys((*BREAKDOWN, GC), 0.0)
        return found


def one_run(config: Any, seed: int, latency: float, profiler: cProfile.Profile | None) -> dict[str, Any]:
    """Run the shape once for ``seed`` in a fresh directory; return its measurements."""
    from treesynth.pipeline import TreeSynth

    config = config.with_overrides({"seed": seed})
    critical = (config.tree.depth * 3 + 1) * latency
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock()
        pipeline = TreeSynth(config, on_progress=clock)
        cpu = time.process_time()
        clock.start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = pipeline.run(TASK, tmp)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - clock.start, time.process_time() - cpu
        summary = result.summary
        total = float(summary["timings"]["seconds_total"])
        calls = int(summary["llm"]["calls"])
        digest = hashlib.sha256((Path(tmp) / "samples.jsonl").read_bytes()).hexdigest()[:16]
        rounds = leaf_rounds(Path(tmp), config.synthesis.samples_per_call)
        chain = tree_chain(Path(tmp))
        by_stage = {row["stage"]: row["calls"] for row in summary["llm"]["by_stage"]}
    tree_s = (clock.tree_done or clock.start) - clock.start
    return {"seed": seed, "status": summary["status"], "samples": summary["counts"]["samples"],
            "seconds_total": total, "wall": round(wall, 3), "critical_path": round(critical, 3),
            "ratio": round(total / critical, 3), "calls": calls, "calls_by_stage": by_stage,
            "tree_chain_trips": chain, "chain_path": round((chain + 1) * latency, 3),
            "chain_ratio": round(total / ((chain + 1) * latency), 3),
            "tree_phase": round(tree_s, 3), "leaf_tail": round(wall - tree_s, 3),
            "first_sample": round((clock.first_sample or clock.start) - clock.start, 3),
            "cpu_seconds": round(cpu, 3), "cpu_ms_per_call": round(cpu * 1000 / max(calls, 1), 2),
            "samples_sha256": digest, **rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a further RunConfig override (repeatable), e.g. executor.kind=ray")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the timed runs here")
    parser.add_argument("--breakdown", action="store_true",
                        help="also sum the CPU time of treesynth's synchronous steps (gate, store, near-dup, adapter)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "critical_path.json")
    args = parser.parse_args()
    from treesynth.config import RunConfig
    from treesynth.errors import ConfigError

    try:
        overrides = parse_sets(args.sets)
        RunConfig().with_overrides(overrides)  # an unknown key or a bad value fails here, before any run
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))  # one line, exit 2
    latency = args.latency_ms / 1000
    profiler = cProfile.Profile() if args.profile else None
    breakdown = CpuBreakdown() if args.breakdown else None
    rows = []
    with fake_server_process("--latency-ms", str(args.latency_ms)) as api_base:
        base = {"model.model": "openai/fake", "model.api_base": api_base, "model.cache": False}
        config = RunConfig().with_overrides({**base, **SHAPE, **overrides})
        warm = config.with_overrides({"tree.depth": 1, "synthesis.samples": 20})
        one_run(warm, 99, latency, None)  # untimed: imports, connection pool, litellm's first-call setup
        if breakdown is not None:
            breakdown.take()
        print(f"{'seed':>4} {'total s':>8} {'path s':>7} {'ratio':>6} {'chain s':>8} {'ratio':>6} {'calls':>6} "
              f"{'tree s':>7} {'tail s':>7} {'cpu s':>6} {'cpu ms':>7} {'top-up':>6} {'status':>9}")
        for seed in args.seeds:
            row = one_run(config, seed, latency, profiler)
            rows.append(row)
            print(f"{seed:>4} {row['seconds_total']:>8.2f} {row['critical_path']:>7.2f} {row['ratio']:>6.2f} "
                  f"{row['chain_path']:>8.2f} {row['chain_ratio']:>6.2f} {row['calls']:>6} {row['tree_phase']:>7.2f} "
                  f"{row['leaf_tail']:>7.2f} {row['cpu_seconds']:>6.2f} {row['cpu_ms_per_call']:>7.2f} "
                  f"{row['top_up_calls']:>6} {row['status']:>9}", flush=True)
            if breakdown is not None:
                row["cpu_breakdown"] = breakdown.take()
                steps = ", ".join(f"{label} {value:.2f}" for label, value in row["cpu_breakdown"].items())
                print(f"      cpu s in: {steps}; the rest (DSPy, litellm, HTTP, event loop, tree) "
                      f"{row['cpu_seconds'] - sum(row['cpu_breakdown'].values()):.2f}", flush=True)
    if profiler is not None:
        profiler.dump_stats(args.profile)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"latency_ms": args.latency_ms, "shape": SHAPE, "overrides": overrides,
                                     "load": os.getloadavg(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
