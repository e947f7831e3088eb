"""CLI start-up: ``treesynth --help`` wall time, side by side with a bare ``python -c pass``.

    python benchmarks/bench_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bare = timed([sys.executable, "-c", "pass"], args.repeat)
    help_ = timed([sys.executable, "-m", "treesynth", "--help"], args.repeat)
    run_help = timed([sys.executable, "-m", "treesynth", "run", "--help"], args.repeat)
    print(f"python -c pass        {bare * 1000:7.0f} ms")
    print(f"treesynth --help      {help_ * 1000:7.0f} ms  ({help_ / bare:.1f}x bare Python; target < 1000 ms)")
    print(f"treesynth run --help  {run_help * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
