"""Embedding-space metrics against brute-force n×n computations and known cases."""

from __future__ import annotations

import numpy as np
import pytest

from treesynth.metrics.embedding import (
    embedding_summary,
    mean_nn_distance,
    mean_pairwise_cosine_distance,
    mean_pairwise_cosine_similarity,
    near_duplicate_rate,
    neighbour_stats,
    normalize_rows,
    remote_clique,
    vendi_score,
)


def random_unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_kernel(x: np.ndarray) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return xn @ xn.T


def off_diagonal(k: np.ndarray) -> np.ndarray:
    return k[~np.eye(len(k), dtype=bool)]


@pytest.mark.parametrize(("n", "d"), [(2, 3), (7, 5), (40, 16), (60, 100)])
def test_mean_pairwise_similarity_matches_brute_force(n: int, d: int) -> None:
    # Unnormalised, shifted input: the function must normalise rows itself.
    x = np.random.default_rng(n).normal(loc=0.3, size=(n, d)) * 5
    expected = off_diagonal(brute_kernel(x)).mean()
    assert mean_pairwise_cosine_similarity(x) == pytest.approx(expected, abs=1e-12)
    assert mean_pairwise_cosine_distance(x) == pytest.approx(1 - expected, abs=1e-12)


def test_pairwise_known_cases() -> None:
    identical = np.tile([[1.0, 2.0, 3.0]], (5, 1))
    assert mean_pairwise_cosine_similarity(identical) == pytest.approx(1.0)
    assert mean_pairwise_cosine_distance(identical) == pytest.approx(0.0, abs=1e-12)
    orthogonal = np.eye(6) * 3.0
    assert mean_pairwise_cosine_similarity(orthogonal) == pytest.approx(0.0, abs=1e-12)
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert mean_pairwise_cosine_distance(opposite) == pytest.approx(2.0)


@pytest.mark.parametrize(("n", "d"), [(1, 4), (5, 3), (30, 8), (50, 200), (5, 64), (40, 8)])
def test_vendi_matches_eigenvalues_of_the_n_by_n_kernel(n: int, d: int) -> None:
    x = np.random.default_rng(d).normal(size=(n, d))
    eig = np.linalg.eigvalsh(brute_kernel(x) / n)
    eig = eig[eig > 1e-12]
    expected = np.exp(-(eig * np.log(eig)).sum())
    assert vendi_score(x) == pytest.approx(expected, rel=1e-9)


def test_vendi_known_cases() -> None:
    assert vendi_score(np.tile([[0.5, -1.0, 2.0]], (9, 1))) == pytest.approx(1.0)
    assert vendi_score(np.eye(7)) == pytest.approx(7.0)
    # Two orthogonal clusters of equal size behave like 2 distinct samples.
    two = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    assert vendi_score(two) == pytest.approx(2.0)
    # Bounded by n and by d.
    x = random_unit(200, 10)
    assert 1.0 <= vendi_score(x) <= 10.0 + 1e-9


def brute_neighbour_stats(x: np.ndarray, threshold: float) -> tuple[float, float, float]:
    k = brute_kernel(x)
    n = len(k)
    dist = np.sqrt(np.maximum(0.0, 2 - 2 * k))
    remote = off_diagonal(dist).mean()
    masked = k.copy()
    np.fill_diagonal(masked, -np.inf)
    nn_sim = masked.max(axis=1)
    assert len(nn_sim) == n
    return remote, float(np.mean(1 - nn_sim)), float(np.mean(nn_sim >= threshold))


@pytest.mark.parametrize("block", [None, 1, 3, 7, 1000])
def test_neighbour_stats_match_brute_force_for_any_block(block: int | None) -> None:
    x = random_unit(23, 6, seed=3)
    x[5] = x[2]  # an exact duplicate
    x[9] = x[4] + 0.01  # a near-duplicate
    remote, nn, dup = brute_neighbour_stats(x, 0.95)
    stats = neighbour_stats(x, 0.95, block=block)
    assert stats.remote_clique == pytest.approx(remote, rel=1e-5)
    assert stats.mean_nn_distance == pytest.approx(nn, abs=1e-5)
    assert stats.near_duplicate_rate == pytest.approx(dup)
    assert dup == pytest.approx(4 / 23)  # 2, 5, 4 and 9
    assert remote_clique(x, block=block) == pytest.approx(remote, rel=1e-5)
    assert mean_nn_distance(x, block=block) == pytest.approx(nn, abs=1e-5)
    assert near_duplicate_rate(x, 0.95, block=block) == pytest.approx(dup)


def test_neighbour_stats_known_cases() -> None:
    identical = np.ones((4, 3))
    stats = neighbour_stats(identical)
    assert stats.remote_clique == pytest.approx(0.0, abs=1e-3)
    assert stats.mean_nn_distance == pytest.approx(0.0, abs=1e-6)
    assert stats.near_duplicate_rate == 1.0
    orthogonal = np.eye(5)
    stats = neighbour_stats(orthogonal)
    assert stats.remote_clique == pytest.approx(np.sqrt(2))
    assert stats.mean_nn_distance == pytest.approx(1.0)
    assert stats.near_duplicate_rate == 0.0


def test_pairwise_metrics_need_two_samples() -> None:
    one = np.ones((1, 3))
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_cosine_similarity(one)
    with pytest.raises(ValueError, match="at least 2"):
        neighbour_stats(one)
    with pytest.raises(ValueError, match="2-D"):
        normalize_rows(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        normalize_rows(np.array([[np.nan, 1.0]]))


def test_zero_rows_stay_zero() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert np.allclose(normalize_rows(x), [[0, 0], [0.6, 0.8]])


def test_embedding_summary_keys_and_small_inputs() -> None:
    x = random_unit(30, 8)
    summary = embedding_summary(x, 0.9)
    assert summary["n"] == 30 and summary["dim"] == 8
    assert summary["vendi_normalized"] == pytest.approx(summary["vendi"] / 30)  # type: ignore[operator]
    assert summary["mean_cosine_distance"] == pytest.approx(1 - summary["mean_cosine_similarity"])  # type: ignore[operator]
    assert summary["near_duplicate_threshold"] == 0.9
    single = embedding_summary(random_unit(1, 8))
    assert single["vendi"] == pytest.approx(1.0)
    assert single["remote_clique"] is None and single["mean_cosine_similarity"] is None
