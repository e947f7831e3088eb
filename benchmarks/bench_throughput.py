"""Pipeline efficiency against a fake provider with 200 ms latency, side by side with bare litellm.

For each concurrency C, in one run:
  * ideal      = C / latency                          (calls per second if the client cost nothing)
  * bare       = a bare ``litellm.acompletion`` loop at concurrency C with the same request shape
  * treesynth  = leaf-synthesis calls per second of a real TreeSynth run (tree grown first, untimed)
and the ratios treesynth/ideal and treesynth/bare, plus client CPU milliseconds per call.

    python benchmarks/bench_throughput.py [--latency-ms 200] [--concurrency 1 2 4 8 16 32 64 128] [--rounds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "benchmark-not-a-secret")

from _fake_server import fake_server_process

MODEL = "openai/gpt-4o-mini"  # litellm knows it accepts JSON schemas; the fake server answers it
TASK = "GSM8K-style grade-school math word problems"


def dspy_request(api_base: str) -> dict:
    """A request shaped like treesynth's leaf-synthesis call (captured from the real adapter)."""
    import dspy

    from treesynth.signatures import SynthesizeLeaf, sample_batch_type

    signature = SynthesizeLeaf.with_updated_fields("batch", type_=sample_batch_type(5))
    adapter = dspy.JSONAdapter()
    messages = adapter.format(signature, demos=[], inputs={"task": TASK, "subspace": ["difficulty: easy"],
                                                           "avoid": []})
    schema = {"type": "json_schema", "json_schema": {"name": "DSPyProgramOutputs", "strict": True, "schema": {
        "type": "object", "properties": {"batch": sample_batch_type(5).model_json_schema()},
        "required": ["batch"]}}}
    return {"model": MODEL, "api_base": api_base, "messages": messages, "response_format": schema,
            "num_retries": 0, "temperature": 1.0}


async def bare_litellm(request: dict, concurrency: int, calls: int) -> tuple[float, float]:
    import litellm

    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await litellm.acompletion(**request, seed=i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return calls / (time.perf_counter() - wall), (time.process_time() - cpu) * 1000 / calls


def treesynth_run(api_base: str, concurrency: int, calls: int) -> tuple[float, float, int]:
    from treesynth.config import RunConfig
    from treesynth.pipeline import TreeSynth

    k = 5
    config = RunConfig().with_overrides({
        "model.model": MODEL, "model.api_base": api_base, "model.cache": False, "tree.depth": 2, "tree.width": 4,
        "tree.pivots": 4, "synthesis.samples": calls * k, "synthesis.samples_per_call": k,
        "concurrency": concurrency, "synthesis.avoid_examples": 0})
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = TreeSynth(config)
        asyncio.run(pipeline.arun(TASK, tmp, tree_only=True))        # untimed: grow the tree
        cpu, wall = time.process_time(), time.perf_counter()
        summary = pipeline.run(TASK, tmp).summary                       # timed: leaf synthesis only
        elapsed, cpu_ms = time.perf_counter() - wall, (time.process_time() - cpu) * 1000
    leaf_calls = sum(r["calls"] for r in summary["llm"]["by_stage"] if r["stage"] == "leaf")
    return leaf_calls / elapsed, cpu_ms / leaf_calls, leaf_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--rounds", type=int, default=12, help="calls per concurrency slot")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "throughput.json")
    args = parser.parse_args()
    rows = []
    with fake_server_process("--latency-ms", str(args.latency_ms)) as api_base:
        request = dspy_request(api_base)
        asyncio.run(bare_litellm(request, 2, 4))  # warm-up: imports and connection pool
        print(f"{'C':>4} {'ideal/s':>8} {'bare/s':>8} {'ts/s':>8} {'ts/ideal':>8} {'ts/bare':>8} "
              f"{'bare ms':>8} {'ts ms':>8} {'calls':>6}")
        for c in args.concurrency:
            calls = max(c * args.rounds, 24)
            ideal = c / (args.latency_ms / 1000)
            bare, bare_cpu = asyncio.run(bare_litellm(request, c, calls))
            ts, ts_cpu, ts_calls = treesynth_run(api_base, c, calls)
            row = {"concurrency": c, "ideal": ideal, "bare": bare, "treesynth": ts, "ts_over_ideal": ts / ideal,
                   "ts_over_bare": ts / bare, "bare_cpu_ms_per_call": bare_cpu, "ts_cpu_ms_per_call": ts_cpu,
                   "treesynth_calls": ts_calls}
            rows.append(row)
            print(f"{c:>4} {ideal:>8.1f} {bare:>8.1f} {ts:>8.1f} {ts / ideal:>8.3f} {ts / bare:>8.3f} "
                  f"{bare_cpu:>8.2f} {ts_cpu:>8.2f} {ts_calls:>6}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"latency_ms": args.latency_ms, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
