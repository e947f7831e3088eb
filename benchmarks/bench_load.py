"""Load: a large run on the fake OpenAI-compatible server at high concurrency with every kind of fault injected.

    flock /tmp/cpu-heavy.lock python benchmarks/bench_load.py [--samples 100000] [--concurrency 128] [--rate 0.05]

The fake server (a separate process) answers each request with a 429 (``Retry-After``), a 500, a hang past
the client's timeout or a malformed (non-JSON) HTTP 200 with probability ``--rate`` each (so 4 x 5 % = 20 %
of requests fail by default), the rest normally. The run is one ``treesynth run`` process (litellm path);
its peak RSS comes from ``os.wait4``. The benchmark then checks what the issue asks for: status
``complete``, exactly ``--samples`` lines in ``samples.jsonl``, every id and every text unique, and peak
memory under 1 GiB. It prints one JSON row and appends it to ``--json``.
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

GIB_MIB = 1024.0


def run_once(args: argparse.Namespace, api_base: str, out: Path) -> dict:
    """One ``treesynth run`` against ``api_base``; its outcome, counts and peak RSS."""
    config = out.parent / "load.yaml"
    config.write_text(f"model:\n  timeout: {args.timeout}\n  attempts: 8\n  cache: false\n"
                      f"  failure_limit: {args.failure_limit}\n")
    env = {**os.environ, "OPENAI_API_KEY": "benchmark-not-a-secret", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "DSPY_CACHEDIR": str(out.parent / "dspy-cache")}
    cmd = [sys.executable, "-m", "treesynth", "run", "GSM8K-style grade-school math word problems",
           "--model", "openai/gpt-4o-mini", "--api-base", api_base, "-n", str(args.samples), "--depth", "3",
           "--width", "6", "--samples-per-call", str(args.samples_per_call), "--concurrency", str(args.concurrency),
           "--config", str(config), "--out", str(out), "--yes", "-q"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    record = json.loads((out / "run.json").read_text())
    ids, texts, lines = set(), set(), 0
    with (out / "samples.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            lines += 1
            ids.add(row["id"])
            texts.add(row.get("text") or json.dumps(row.get("fields"), sort_keys=True))
    rss = usage.ru_maxrss / 1024
    return {"samples": args.samples, "concurrency": args.concurrency, "fault_rate_each": args.rate,
            "exit": os.waitstatus_to_exitcode(status), "status": record["status"], "lines": lines,
            "unique_ids": len(ids), "unique_texts": len(texts), "calls": record["llm"]["calls"],
            "failed_calls": record["llm"]["failed"], "retries": record["llm"]["retries"],
            "seconds": round(seconds, 1), "peak_rss_mib": round(rss, 1),
            "ok": (record["status"] == "complete" and lines == len(ids) == len(texts) == args.samples
                   and rss < GIB_MIB)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--samples-per-call", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.05, help="probability of each fault kind (default: 0.05)")
    parser.add_argument("--timeout", type=float, default=20.0, help="client timeout per attempt (s); hangs exceed it")
    parser.add_argument("--failure-limit", type=int, default=64,
                        help="model.failure_limit (default 64: at concurrency 128 the hung calls started together "
                             "time out together, and the default 8 trips on such a burst)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "load.json")
    args = parser.parse_args()
    faults = ["--rate-429", str(args.rate), "--retry-after", "1", "--rate-500", str(args.rate),
              "--rate-hang", str(args.rate), "--hang-seconds", str(args.timeout * 3),
              "--rate-malformed", str(args.rate), "--seed", "14"]
    with fake_server_process(*faults) as api_base, tempfile.TemporaryDirectory() as tmp:
        row = run_once(args, api_base, Path(tmp) / "run")
    row["command"] = " ".join(["python", "benchmarks/bench_load.py", *sys.argv[1:]])
    print(json.dumps(row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.json.read_text()) if args.json.exists() else []
    args.json.write_text(json.dumps([*previous, row], indent=2) + "\n")
    if not row["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
