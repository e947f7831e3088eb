"""The near-duplicate rate of a finished (or interrupted) run before and after near-duplicate removal.

"Before" is the rate among the delivered samples plus the candidates rejected as near-duplicates (what the
run would have kept without the check, ignoring top-ups); "after" is the rate among the delivered samples.
Both are computed by ``treesynth eval``'s code (:func:`treesynth.neardup.near_duplicate_rate`, the lexical
``minhash_near_duplicate_rate``) at the run's own threshold. It also prints the near-duplicate pairs the run
caught, most similar first. Usage::

    python benchmarks/neardup_rate.py RUN_DIR [--pairs 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from treesynth.neardup import near_duplicate_rate


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    run = json.loads((args.run_dir / "run.json").read_text(encoding="utf-8"))
    threshold = float(run["config"]["synthesis"]["near_dup"]) or 0.8
    samples = read_jsonl(args.run_dir / "samples.jsonl")
    near = [r for r in read_jsonl(args.run_dir / "rejected.jsonl") if r["reason"] == "near-duplicate"]
    delivered = [str(s["text"]) for s in samples]
    before = near_duplicate_rate([*delivered, *(str(r["text"]) for r in near)], threshold)
    after = near_duplicate_rate(delivered, threshold)
    print(f"run {args.run_dir}: status {run['status']}, {len(samples)} delivered, {len(near)} rejected as "
          f"near-duplicates (counts.near_duplicates = {run['counts']['near_duplicates']}), threshold {threshold}")
    print(f"near-duplicate rate before: {before:.3f} ({len(delivered) + len(near)} texts); after: {after:.3f} "
          f"({len(delivered)} texts)")
    by_id = {s["id"]: s for s in samples}
    for line in sorted(near, key=lambda r: -float(r["similarity"]))[:args.pairs]:  # type: ignore[arg-type]
        kept = by_id.get(line["duplicate_of"], {})
        print(f"- Jaccard {line['similarity']}: rejected (leaf {line['leaf_id']}) {line['text']!r}\n"
              f"  kept (leaf {kept.get('leaf_id')}, {line['duplicate_of']}) {kept.get('text')!r}")


if __name__ == "__main__":
    main()
