"""Peak memory of a large run on the fake OpenAI-compatible server, side by side with a small one.

    python benchmarks/bench_memory.py [--samples 100000] [--small 1000]

Each run is a separate ``treesynth run`` process (litellm path, 0 ms server latency); its peak RSS comes
from ``os.wait4``. The ratio large/small shows how memory grows with the number of samples (samples
live in SQLite and are streamed to ``samples.jsonl``; nothing holds them in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _fake_server import fake_server_process


def peak_rss_mib(samples: int, api_base: str, out: Path) -> tuple[float, float, dict]:
    env = {**os.environ, "OPENAI_API_KEY": "benchmark-not-a-secret", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cmd = [sys.executable, "-m", "treesynth", "run", "GSM8K-style grade-school math word problems",
           "--model", "openai/gpt-4o-mini", "--api-base", api_base, "-n", str(samples), "--depth", "3",
           "--width", "6", "--samples-per-call", "10", "--concurrency", "64", "--out", str(out), "-q"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"run failed with status {status}")
    summary = json.loads((out / "run.json").read_text())
    return usage.ru_maxrss / 1024, time.perf_counter() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = parser.parse_args()
    rows = []
    with fake_server_process() as api_base, tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.samples):
            rss, seconds, summary = peak_rss_mib(n, api_base, Path(tmp) / f"n{n}")
            row = {"samples": n, "peak_rss_mib": round(rss, 1), "seconds": round(seconds, 1),
                   "calls": summary["llm"]["calls"], "delivered": summary["counts"]["samples"],
                   "status": summary["status"], "leaves": summary["counts"]["leaves"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    large, small = rows[1], rows[0]
    growth = large["peak_rss_mib"] / small["peak_rss_mib"]
    print(f"peak RSS {large['peak_rss_mib']} MiB for {large['samples']:,} samples "
          f"({large['peak_rss_mib'] / 1024:.2f} of the 1 GiB target); "
          f"{growth:.2f}x the {small['samples']:,}-sample run")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
