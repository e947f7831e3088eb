"""Near-duplicate removal at scale: MinHash LSH (datasketch, as the run's gate uses it, and rensa) beside the
exact-dedup pass, over 100,000 synthetic-but-realistic samples, in one run.

The samples are grade-school math word problems from templates (names, objects, places, numbers, question
forms), about 20 words each. A share of them (``--near-share``, 8%) are planted near-duplicates of an earlier
sample: one or two words swapped or a number changed, the way a small model repeats itself; a further 2% are
normalized copies (case and punctuation), which the exact pass removes.

Passes, each timed over all samples in order (each sample checked against the ones kept before it):

* **exact**: what the store does: ``treesynth.models.normalize`` and an SQLite ``INSERT OR IGNORE`` into a
  ``UNIQUE`` column (in memory);
* **datasketch (treesynth.neardup)**: :func:`treesynth.neardup.near_duplicate_pairs`, the rule the run's
  accept path and ``eval`` apply: word 2-gram shingles, 128-permutation MinHash, MinHashLSH candidates, exact
  Jaccard check;
* **rensa (treesynth.neardup, backend="rensa")**: the same code with ``rensa.RMinHash`` + ``rensa.RMinHashLSH``
  proposing the candidates (same shingles, bands and exact check), so only the sketch and index differ.

Imports (scipy, which datasketch's LSH loads, takes seconds) are warmed up before timing.

Usage::

    python benchmarks/bench_neardup.py                 # 100,000 samples
    python benchmarks/bench_neardup.py --samples 20000 # quicker
"""

from __future__ import annotations

import argparse
import platform
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from treesynth.models import normalize
from treesynth.neardup import DEFAULT_THRESHOLD, NUM_PERM, near_duplicate_pairs

T = TypeVar("T")

NAMES = ["Maria", "Tom", "Aisha", "Ken", "Lucia", "Omar", "Priya", "Jonas", "Mei", "Diego", "Sara", "Ivan", "Zoe",
         "Kofi", "Hana", "Leo", "Nina", "Raj", "Elif", "Sam"]
THINGS = ["apples", "pencils", "marbles", "cookies", "stickers", "books", "tickets", "eggs", "cupcakes", "stamps",
          "shells", "crayons", "balloons", "oranges", "coins", "cards", "bottles", "seeds", "blocks", "muffins"]
PLACES = ["at the market", "in the garden", "at school", "at the bakery", "in the library", "at the fair",
          "on the farm", "at the park", "in the kitchen", "at the store"]
ACTIONS = [("buys", "more"), ("gives away", "of them"), ("sells", "of them"), ("finds", "more"),
           ("eats", "of them"), ("loses", "of them"), ("bakes", "more"), ("collects", "more")]
QUESTIONS = ["How many {t} does {n} have now?", "How many {t} are left?", "What is the total number of {t}?",
             "How many {t} does {n} end up with?", "How many {t} remain after that?"]
SWAPS = {"buys": "gets", "gives away": "hands out", "more": "extra", "now": "in the end", "total": "whole",
         "remain": "stay", "left": "remaining", "market": "shop", "school": "class"}


def problem(rng: random.Random) -> str:
    """One templated word problem (two steps), about 20 words."""
    name, other = rng.sample(NAMES, 2)
    thing, place = rng.choice(THINGS), rng.choice(PLACES)
    (verb1, tail1), (verb2, tail2) = rng.sample(ACTIONS, 2)
    a, b, c = rng.randint(2, 99), rng.randint(2, 60), rng.randint(2, 40)
    question = rng.choice(QUESTIONS).format(t=thing, n=name)
    return (f"{name} has {a} {thing} {place}. {name} {verb1} {b} {tail1} and then {verb2} {c} {tail2} "
            f"with {other}. {question}")


def near_copy(text: str, rng: random.Random) -> str:
    """A near-duplicate: one word swapped for a synonym, or one number changed."""
    words = text.split()
    numbers = [i for i, w in enumerate(words) if w.isdigit()]
    swappable = [k for k in SWAPS if f" {k} " in f" {text} "]
    if swappable and rng.random() < 0.5:
        key = rng.choice(swappable)
        return f" {text} ".replace(f" {key} ", f" {SWAPS[key]} ", 1).strip()
    i = rng.choice(numbers)
    words[i] = str(int(words[i]) + rng.randint(1, 9))
    return " ".join(words)


def corpus(n: int, seed: int, near_share: float, exact_share: float) -> list[str]:
    """``n`` problems; ``near_share`` of them near-copies and ``exact_share`` normalized copies of earlier ones."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if texts and roll < near_share:
            texts.append(near_copy(rng.choice(texts), rng))
        elif texts and roll < near_share + exact_share:
            texts.append(rng.choice(texts).upper().rstrip("?") + " ?")
        else:
            texts.append(problem(rng))
    return texts


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def exact_pass(texts: list[str]) -> int:
    """The store's exact dedup: normalize, then ``INSERT OR IGNORE`` into a ``UNIQUE`` column; returns duplicates."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE samples(seq INTEGER PRIMARY KEY, norm TEXT NOT NULL UNIQUE)")
    duplicates = 0
    with db:
        for text in texts:
            duplicates += 1 - db.execute("INSERT OR IGNORE INTO samples(norm) VALUES(?)", (normalize(text),)).rowcount
    db.close()
    return duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--near-share", type=float, default=0.08)
    parser.add_argument("--exact-share", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts, t_data = timed(lambda: corpus(args.samples, args.seed, args.near_share, args.exact_share))
    words = sum(len(t.split()) for t in texts)
    print(f"{len(texts):,} samples, {words / len(texts):.1f} words each on average "
          f"(generated in {t_data:.1f} s); threshold {args.threshold}, {NUM_PERM} permutations")
    print(f"python {platform.python_version()}, {platform.machine()}")

    near_duplicate_pairs(texts[:50])  # warm up the imports
    exact, t_exact = timed(lambda: exact_pass(texts))
    print(f"exact (normalize + SQLite UNIQUE):  {t_exact:6.2f} s  {exact:,} exact duplicates")
    ds_pairs, t_ds = timed(lambda: near_duplicate_pairs(texts, args.threshold))
    print(f"MinHash LSH, datasketch (default): {t_ds:6.2f} s  {len(ds_pairs):,} near-duplicates (exact ones included)")
    try:
        near_duplicate_pairs(texts[:50], backend="rensa")
    except ImportError:
        print("rensa: not installed (pip install rensa)")
        return
    rs_pairs, t_rs = timed(lambda: near_duplicate_pairs(texts, args.threshold, backend="rensa"))
    print(f"MinHash LSH, rensa:                {t_rs:6.2f} s  {len(rs_pairs):,} near-duplicates")

    ds_set, rs_set = {i for i, _ in ds_pairs}, {i for i, _ in rs_pairs}
    print(f"agreement: {len(ds_set & rs_set):,} flagged by both, {len(ds_set - rs_set):,} only by datasketch, "
          f"{len(rs_set - ds_set):,} only by rensa")
    print(f"ratios: datasketch / exact = {t_ds / t_exact:.1f}x, rensa / exact = {t_rs / t_exact:.1f}x, "
          f"datasketch / rensa = {t_ds / t_rs:.2f}x")
    for name, seconds in (("datasketch", t_ds), ("rensa", t_rs)):
        goal = "met" if seconds < 30 else "missed"
        print(f"goal (MinHash over {len(texts):,} samples in < 30 s) with {name}: {goal} ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
