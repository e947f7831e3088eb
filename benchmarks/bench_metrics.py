"""Benchmark the diversity metrics at scale against the naive algorithms.

Fast path (what ``treesynth eval`` runs) on ``--n`` random unit vectors and ``--texts`` short texts:

* closed-form mean pairwise cosine similarity, O(n·d);
* Vendi score through the d×d covariance, O(n·d² + d³);
* one chunked pass for remote-clique, mean nearest-neighbour distance and near-duplicate rate, O(n²·d);
* distinct-1/2/3 + n-gram entropy, and the exact linear self-BLEU-4.

Naive baselines are measured in the same run on a subset and extrapolated by their complexity:

* the n×n kernel (pairwise mean, remote-clique, nearest neighbour) at ``--naive-n``, × (N/n)²;
* the Vendi score from the eigenvalues of the n×n kernel at ``--naive-n``, × (N/n)³;
* NLTK ``corpus_bleu`` self-BLEU (every text against all others) at ``--nltk-n``, × (N/n)².

Cheap measurements (the closed forms and the naive baselines) take the best of the default BLAS threads and
one thread (threadpoolctl); the O(n²) chunked pass runs once with the default threads. The fast results are
checked against the naive ones on the subsets. Usage::

    python benchmarks/bench_metrics.py            # the full run, ~4 minutes on 2 busy cores
    python benchmarks/bench_metrics.py --n 20000 --texts 20000   # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from treesynth.metrics.embedding import mean_pairwise_cosine_similarity, neighbour_stats, vendi_score
from treesynth.metrics.lexical import lexical_summary, self_bleu, self_bleu_naive, tokenize

T = TypeVar("T")

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "ber", "dan", "fel", "gor"]


def secs(value: float) -> str:
    """Seconds for the table: one decimal below 100 s, thousands separators above."""
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def best_time(fn: Callable[[], T]) -> tuple[T, float]:
    """Best wall time of ``fn`` with the default BLAS threads and with one thread (threadpoolctl, if installed).

    On a busy machine, multi-threaded OpenBLAS can be several times slower than one thread (spinning
    threads). Taking the best of both keeps the baselines fair.
    """
    value, best = timed(fn)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return value, best
    with threadpool_limits(limits=1):
        _, single = timed(fn)
    return value, min(best, single)


def random_unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic_texts(n: int, seed: int, vocab: int = 8000, phrases: int = 300) -> list[str]:
    """Short texts like templated synthetic data: 2-4 shared phrases (3-6 words) joined by 1-3 filler words.

    Words follow a Zipf-like distribution over a made-up vocabulary, so texts share n-grams at every scale.
    """
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))) + str(i % 7) for i in range(vocab)]
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    bank = [" ".join(words[j] for j in rng.choice(vocab, size=rng.integers(3, 7), p=p)) for _ in range(phrases)]
    fillers = rng.choice(vocab, size=12 * n, p=p)
    texts = []
    for i in range(n):
        picks = rng.integers(0, phrases, size=rng.integers(2, 5))
        parts = [f"{bank[k]} {words[fillers[12 * i + j]]}" for j, k in enumerate(picks)]
        texts.append(" ".join(parts) + ".")
    return texts


# ----------------------------------------------------------------------------------------- naive versions


def naive_kernel_metrics(x: np.ndarray, threshold: float) -> dict[str, float]:
    """Remote-clique, nearest-neighbour distance and near-duplicate rate from full n×n matrices."""
    k = x.astype(np.float64) @ x.astype(np.float64).T
    n = len(k)
    off = ~np.eye(n, dtype=bool)
    dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * k))
    np.fill_diagonal(k, -np.inf)
    nn = k.max(axis=1)
    return {
        "remote_clique": float(dist[off].mean()),
        "mean_nn": float(np.mean(1.0 - nn)),
        "dup": float(np.mean(nn >= threshold)),
    }


def naive_mean_sim(x: np.ndarray) -> float:
    """Mean off-diagonal cosine similarity from the full n×n kernel."""
    k = x.astype(np.float64) @ x.astype(np.float64).T
    n = len(k)
    return float((k.sum() - np.trace(k)) / (n * (n - 1)))


def naive_vendi(x: np.ndarray) -> float:
    k = x.astype(np.float64) @ x.astype(np.float64).T
    w = np.linalg.eigvalsh(k / len(k))
    w = w[w > 1e-12]
    return float(np.exp(-(w * np.log(w)).sum()))


# ----------------------------------------------------------------------------------------------- sections


def bench_embedding(args: argparse.Namespace, rows: list[tuple[str, ...]]) -> None:
    vendi_score(random_unit(500, args.dim, args.seed))  # warm up BLAS/LAPACK threads
    x, t_gen = timed(lambda: random_unit(args.n, args.dim, args.seed))
    print(f"generated {args.n:,} × {args.dim} unit vectors in {t_gen:.1f}s", flush=True)
    sim, t_sim = best_time(lambda: mean_pairwise_cosine_similarity(x))
    vendi, t_vendi = best_time(lambda: vendi_score(x))
    stats, t_pass = timed(lambda: neighbour_stats(x, args.threshold))
    print(f"fast: mean sim {sim:.6f} ({t_sim:.3f}s), Vendi {vendi:.2f} ({t_vendi:.3f}s), chunked pass {t_pass:.1f}s")
    print(
        f"      remote-clique {stats.remote_clique:.6f}, mean NN distance {stats.mean_nn_distance:.6f}, "
        f"near-dup rate {stats.near_duplicate_rate:.6f}",
        flush=True,
    )

    m = args.naive_n
    sub = x[:m]
    naive_sim, t_naive_sim = best_time(lambda: naive_mean_sim(sub))
    naive, t_naive = best_time(lambda: naive_kernel_metrics(sub, args.threshold))
    nv, t_nv = best_time(lambda: naive_vendi(sub))
    scale2, scale3 = (args.n / m) ** 2, (args.n / m) ** 3
    fast_sub = neighbour_stats(sub, args.threshold)
    checks = {
        "mean sim": abs(mean_pairwise_cosine_similarity(sub) - naive_sim),
        "Vendi": abs(vendi_score(sub) - nv),
        "remote-clique": abs(fast_sub.remote_clique - naive["remote_clique"]),
        "mean NN": abs(fast_sub.mean_nn_distance - naive["mean_nn"]),
        "near-dup": abs(fast_sub.near_duplicate_rate - naive["dup"]),
    }
    print(
        f"naive n×n at n={m:,}: pairwise mean {t_naive_sim:.2f}s, distance/NN metrics {t_naive:.2f}s, "
        f"Vendi eig {t_nv:.2f}s; "
        "max |fast − naive| on the subset: " + ", ".join(f"{k} {v:.1e}" for k, v in checks.items()),
        flush=True,
    )
    gib = args.n**2 * 8 / 2**30
    rows += [
        (
            "mean pairwise cosine sim/dist",
            f"{t_sim:.3f}",
            f"n×n kernel: {secs(t_naive_sim * scale2)}",
            f"{t_naive_sim * scale2 / t_sim:,.0f}×",
        ),
        (
            "Vendi score (cosine)",
            f"{t_vendi:.3f}",
            f"n×n eig: {secs(t_nv * scale3)}",
            f"{t_nv * scale3 / t_vendi:,.0f}×",
        ),
        (
            "remote-clique + mean NN dist + near-dup (one chunked pass)",
            f"{t_pass:.1f}",
            f"n×n matrices: {secs(t_naive * scale2)} (needs ≥ {gib:,.1f} GiB)",
            f"{t_naive * scale2 / t_pass:,.1f}×",
        ),
    ]


def bench_lexical(args: argparse.Namespace, rows: list[tuple[str, ...]]) -> None:
    texts, t_gen = timed(lambda: synthetic_texts(args.texts, args.seed))
    docs, t_tok = timed(lambda: [tokenize(t) for t in texts])
    tokens = sum(map(len, docs))
    print(f"generated {len(texts):,} texts ({tokens:,} tokens) in {t_gen:.1f}s; tokenised in {t_tok:.1f}s", flush=True)
    summary, t_lex = timed(lambda: lexical_summary(docs, 3))
    bleu, t_bleu = timed(lambda: self_bleu(docs, 4))
    print(
        f"fast: distinct-1/2/3 + entropy {t_lex:.1f}s, self-BLEU-4 {bleu:.6f} in {t_bleu:.1f}s "
        f"(distinct-2 {summary['distinct_2']:.4f})",
        flush=True,
    )

    m = args.nltk_n
    sub = docs[:m]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, t_ref = timed(lambda: self_bleu_naive(sub, 4))
    fast = self_bleu(sub, 4)
    extrapolated = t_ref * (args.texts / m) ** 2
    print(
        f"NLTK self-BLEU at n={m}: {ref!r} in {t_ref:.1f}s; linear algorithm on the same texts: {fast!r} "
        f"(|diff| {abs(ref - fast):.1e})",
        flush=True,
    )
    rows += [
        ("distinct-1/2/3 + n-gram entropy", f"{t_lex:.1f}", "—", "—"),
        (
            "self-BLEU-4 (exact, linear)",
            f"{t_bleu:.1f}",
            f"NLTK: {secs(extrapolated)} (≈ {extrapolated / 86400:.1f} days)",
            f"{extrapolated / t_bleu:,.0f}×",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors (default 100000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--texts", type=int, default=100_000, help="texts for the lexical metrics (default 100000)")
    parser.add_argument("--naive-n", type=int, default=2000, help="subset size for the n×n baselines")
    parser.add_argument("--nltk-n", type=int, default=250, help="subset size for the NLTK self-BLEU baseline")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print("environment: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    rows: list[tuple[str, ...]] = []
    total_start = time.perf_counter()
    bench_embedding(args, rows)
    bench_lexical(args, rows)
    print(f"\ntotal wall time {time.perf_counter() - total_start:.0f}s\n")
    print(
        f"| metric (N = {args.n:,} vectors × {args.dim} / {args.texts:,} texts) | fast (s) | naive, extrapolated (s) "
        "| speed-up |"
    )
    print("|---|---:|---|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
