"""Pipeline efficiency against a fake provider with 200 ms latency, side by side with bare litellm.

For each concurrency C, in one run:
  * ideal      = C / latency                          (calls per second if the client cost nothing)
  * bare       = a bare ``litellm.acompletion`` loop at concurrency C with the same request shape
  * local      = leaf-synthesis calls per second of a real TreeSynth run (tree grown first, untimed)
  * ray1, ray2 = the same run under ``--executor ray`` with 1 and 2 workers (timed once the workers are up)
and each executor's ratio to bare litellm, plus where the CPU went: milliseconds of CPU per leaf call in the
driver, in the Ray workers and in the fake server's process.

    python benchmarks/bench_throughput.py [--latency-ms 200] [--concurrency 1 2 4 8 16 32 64 128] [--rounds 12]
        [--executors local ray1 ray2]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "benchmark-not-a-secret")

from _fake_server import fake_server

MODEL = "openai/gpt-4o-mini"  # litellm knows it accepts JSON schemas; the fake server answers it
TASK = "GSM8K-style grade-school math word problems"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far (Linux ``/proc``; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


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


class Clock:
    """Starts the timed part of a run: at once (local) or once the Ray workers are built (their imports and LM
    set-up are a one-time cost per run, not throughput); records the workers' and the server's CPU from then."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.wall = self.cpu = self.server = 0.0
        self.pids: list[int] = []

    def start(self, pids: list[int] | None = None) -> None:
        self.pids = pids or []
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.server = cpu_seconds(self.server_pid)
        self.workers = sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> dict[str, float]:
        return {"wall": time.perf_counter() - self.wall, "driver": time.process_time() - self.cpu,
                "workers": sum(cpu_seconds(pid) for pid in self.pids) - self.workers,
                "server": cpu_seconds(self.server_pid) - self.server}


def treesynth_run(api_base: str, concurrency: int, calls: int, executor: str, clock: Clock) -> dict[str, Any]:
    from treesynth.config import RunConfig
    from treesynth.executors.ray_pool import RayExecutor
    from treesynth.pipeline import TreeSynth

    k = 5
    workers = {"local": None, "ray1": 1, "ray2": 2}[executor]
    config = RunConfig().with_overrides({
        "model.model": MODEL, "model.api_base": api_base, "model.cache": False, "tree.depth": 2, "tree.width": 4,
        "tree.pivots": 4, "synthesis.samples": calls * k, "synthesis.samples_per_call": k,
        "concurrency": concurrency, "synthesis.avoid_examples": 0,
        "executor.kind": "local" if workers is None else "ray", "executor.workers": workers})
    start = RayExecutor.start

    async def started(self: RayExecutor) -> None:  # time from the moment every worker is built
        await start(self)
        clock.start([pid for pid, _node in await self.worker_places()])

    RayExecutor.start = started  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pipeline = TreeSynth(config.with_overrides({"executor.kind": "local", "executor.workers": None}))
            asyncio.run(pipeline.arun(TASK, tmp, tree_only=True))   # untimed: grow the tree
            clock.start()
            summary = TreeSynth(config).run(TASK, tmp).summary       # timed: leaf synthesis only
            used = clock.stop()
    finally:
        RayExecutor.start = start  # type: ignore[method-assign]
    leaf_calls = sum(r["calls"] for r in summary["llm"]["by_stage"] if r["stage"] == "leaf")
    return {"rate": leaf_calls / used["wall"], "calls": leaf_calls,
            **{f"{part}_cpu_ms": used[part] * 1000 / leaf_calls for part in ("driver", "workers", "server")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--rounds", type=int, default=12, help="calls per concurrency slot")
    parser.add_argument("--executors", nargs="+", default=["local", "ray1", "ray2"],
                        choices=["local", "ray1", "ray2"])
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "throughput.json")
    args = parser.parse_args()
    if any(name.startswith("ray") for name in args.executors):
        import ray

        ray.init(num_cpus=2, include_dashboard=False, namespace="treesynth", log_to_driver=False)
    rows = []
    with fake_server("--latency-ms", str(args.latency_ms)) as (api_base, server_pid):
        request = dspy_request(api_base)
        asyncio.run(bare_litellm(request, 2, 4))  # warm-up: imports and connection pool
        header = f"{'C':>4} {'ideal/s':>8} {'bare/s':>8} {'bare ms':>8}"
        for name in args.executors:
            header += f" {name + '/s':>8} {name + '÷bare':>10} {'cpu ms d/w/s':>16}"
        print(header)
        for c in args.concurrency:
            calls = max(c * args.rounds, 24)
            ideal = c / (args.latency_ms / 1000)
            bare, bare_cpu = asyncio.run(bare_litellm(request, c, calls))
            row: dict[str, Any] = {"concurrency": c, "ideal": ideal, "bare": bare, "bare_cpu_ms_per_call": bare_cpu}
            line = f"{c:>4} {ideal:>8.1f} {bare:>8.1f} {bare_cpu:>8.2f}"
            for name in args.executors:
                got = treesynth_run(api_base, c, calls, name, Clock(server_pid))
                row[name] = {**got, "over_bare": got["rate"] / bare}
                cpu = f"{got['driver_cpu_ms']:.1f}/{got['workers_cpu_ms']:.1f}/{got['server_cpu_ms']:.1f}"
                line += f" {got['rate']:>8.1f} {got['rate'] / bare:>10.3f} {cpu:>16}"
            rows.append(row)
            print(line, flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"latency_ms": args.latency_ms, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
