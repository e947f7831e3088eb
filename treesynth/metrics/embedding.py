"""Embedding-space diversity metrics.

Every function takes an ``n × d`` matrix ``X`` of embeddings, one row per sample. Rows are L2-normalised
first (:func:`normalize_rows`), so ``xᵢ·xⱼ`` is the cosine similarity ``sᵢⱼ``. Nothing here ever builds
the ``n × n`` kernel in one piece:

* the pairwise means use the closed form ``Σᵢ≠ⱼ sᵢⱼ = ‖Σᵢ xᵢ‖² − Σᵢ ‖xᵢ‖²`` -- ``O(n·d)``;
* the Vendi score uses the ``d × d`` covariance ``XᵀX / n``, whose non-zero eigenvalues are those of the
  kernel ``K / n`` -- ``O(n·d² + d³)``;
* remote-clique (Euclidean), nearest-neighbour distance and the near-duplicate rate need every pair, so they
  walk the upper block-triangle of the kernel, one block of rows at a time -- ``O(n²·d)`` time,
  ``O(block·n)`` memory. The three share one pass in :func:`neighbour_stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]

#: Default cosine-similarity threshold above which two samples count as near-duplicates.
DEFAULT_DUPLICATE_THRESHOLD = 0.95

#: Similarity entries held in memory at once by the chunked pass (float32: 4 bytes each → 128 MiB).
_BLOCK_ELEMENTS = 1 << 25


def normalize_rows(x: FloatArray, dtype: npt.DTypeLike = np.float64) -> FloatArray:
    """Return ``X`` as a 2-D array of ``dtype`` with every row scaled to unit L2 norm.

    All-zero rows stay zero (their cosine similarity with anything is taken as 0).

    Raises:
        ValueError: ``X`` is not 2-D or contains NaN/inf.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n × d), got shape {arr.shape}")
    out: FloatArray = np.array(arr, dtype=dtype, copy=True)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    if not np.isfinite(norms).all():  # a NaN or ±inf anywhere in a row makes its norm non-finite
        raise ValueError("embeddings contain NaN or infinite values")
    norms[norms == 0] = 1.0
    out /= norms[:, None]
    return out


def _require_pairs(n: int) -> None:
    if n < 2:
        raise ValueError(f"pairwise metrics need at least 2 samples, got {n}")


def mean_pairwise_cosine_similarity(x: FloatArray) -> float:
    """Mean cosine similarity over all ordered pairs ``i ≠ j``, in closed form.

    With unit rows and ``s = Σᵢ xᵢ``::

        mean_sim = (s·s − Σᵢ ‖xᵢ‖²) / (n (n − 1))

    ``O(n·d)`` time and memory. Identical rows give 1; mutually orthogonal rows give 0.
    """
    xn = normalize_rows(x)
    n = xn.shape[0]
    _require_pairs(n)
    s = xn.sum(axis=0)
    self_sim = float(np.einsum("ij,ij->", xn, xn))
    return float((s @ s - self_sim) / (n * (n - 1)))


def mean_pairwise_cosine_distance(x: FloatArray) -> float:
    """Mean cosine distance ``1 − sᵢⱼ`` over all pairs ``i ≠ j``: ``1 − mean_pairwise_cosine_similarity(X)``.

    This is also the remote-clique score under the cosine distance.
    """
    return 1.0 - mean_pairwise_cosine_similarity(x)


def vendi_score(x: FloatArray) -> float:
    """Vendi score with the cosine kernel ``K = X Xᵀ`` (Friedman & Dieng, 2023).

    ``VS = exp(−Σₖ λₖ log λₖ)`` where ``λₖ`` are the eigenvalues of ``K / n``. They are computed from the
    smaller of ``K / n`` (``n × n``) and ``C = XᵀX / n`` (``d × d``), which have the same non-zero
    eigenvalues: large sets cost ``O(n·d² + d³)`` and form no ``n × n`` matrix, small sets of
    high-dimensional vectors cost ``O(n²·d + n³)``. Eigenvalues below ``1e-12`` are dropped (``0 log 0 = 0``).

    The score is an effective number of distinct samples: 1 for identical rows, ``n`` for ``n`` orthogonal
    rows (so it is at most ``min(n, d)``). Divide by ``n`` to compare sets of different sizes.
    """
    xn = normalize_rows(x)
    n, d = xn.shape
    if n == 0:
        raise ValueError("the Vendi score needs at least 1 sample")
    kernel = (xn @ xn.T) / n if n <= d else (xn.T @ xn) / n
    eig = np.linalg.eigvalsh(kernel)
    eig = eig[eig > 1e-12]
    return float(np.exp(-np.sum(eig * np.log(eig))))


@dataclass(frozen=True)
class NeighbourStats:
    """Results of one chunked pass over all pairs (see :func:`neighbour_stats`).

    Attributes:
        remote_clique: Mean Euclidean distance ``‖xᵢ − xⱼ‖ = √(2 − 2 sᵢⱼ)`` over pairs ``i ≠ j``.
        mean_nn_distance: Mean over ``i`` of the cosine distance to the nearest other sample,
            ``1 − maxⱼ≠ᵢ sᵢⱼ`` (the Chamfer / novelty distance).
        near_duplicate_rate: Fraction of samples whose nearest other sample has ``sᵢⱼ ≥ threshold``.
        threshold: The cosine-similarity threshold used for ``near_duplicate_rate``.
    """

    remote_clique: float
    mean_nn_distance: float
    near_duplicate_rate: float
    threshold: float


def _block_rows(n: int, block: int | None) -> int:
    if block is not None:
        if block < 1:
            raise ValueError(f"block must be ≥ 1, got {block}")
        return block
    return max(1, min(n, _BLOCK_ELEMENTS // max(n, 1)))


def neighbour_stats(
    x: FloatArray,
    threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    *,
    block: int | None = None,
) -> NeighbourStats:
    """Remote-clique (Euclidean), mean nearest-neighbour distance and near-duplicate rate in one pass.

    The diagonal (a sample with itself) is excluded from the distance sum and the nearest-neighbour maximum::

        remote_clique       = 1/(n(n−1)) Σᵢ Σⱼ≠ᵢ √(2 − 2 sᵢⱼ)
        mean_nn_distance    = 1/n Σᵢ (1 − maxⱼ≠ᵢ sᵢⱼ)
        near_duplicate_rate = 1/n |{i : maxⱼ≠ᵢ sᵢⱼ ≥ threshold}|

    ``S`` is symmetric, so only its upper block-triangle is computed: for the rows ``[a, b)`` of each block,
    ``S_B = X_[a,b) X_[a,n)ᵀ`` in float32. Its square part ``[a,b)×[a,b)`` holds both orders of each pair;
    the rectangle ``[a,b)×[b,n)`` holds one order, so its distances count twice and its column maxima update
    the nearest neighbours of later rows. ``n²·d`` multiply-adds in total (half the full kernel), memory
    ``O(block·n)`` (``block`` defaults to ~32M similarities). Sums are accumulated in float64.
    """
    xn = normalize_rows(x, dtype=np.float32)
    n = xn.shape[0]
    _require_pairs(n)
    rows = _block_rows(n, block)
    dist_sum = 0.0
    nn_sim = np.full(n, -np.inf, dtype=np.float64)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        width = stop - start
        sim = xn[start:stop] @ xn[start:].T
        diag = (np.arange(width), np.arange(width))
        sim[diag] = -np.inf
        np.maximum(nn_sim[start:stop], sim.max(axis=1), out=nn_sim[start:stop])
        if stop < n:
            np.maximum(nn_sim[stop:], sim[:, width:].max(axis=0), out=nn_sim[stop:])
        sim[diag] = 1.0
        np.subtract(1.0, sim, out=sim)
        np.maximum(sim, 0.0, out=sim)
        np.sqrt(sim, out=sim)
        dist_sum += float(sim[:, :width].sum(dtype=np.float64)) + 2.0 * float(sim[:, width:].sum(dtype=np.float64))
    nn_sim = np.minimum(nn_sim, 1.0)
    return NeighbourStats(
        remote_clique=math.sqrt(2.0) * dist_sum / (n * (n - 1)),
        mean_nn_distance=float(np.mean(1.0 - nn_sim)),
        near_duplicate_rate=float(np.mean(nn_sim >= threshold)),
        threshold=threshold,
    )


def remote_clique(x: FloatArray, *, block: int | None = None) -> float:
    """Remote-clique score: mean Euclidean distance between unit embeddings over pairs ``i ≠ j``.

    ``1/(n(n−1)) Σᵢ Σⱼ≠ᵢ ‖xᵢ − xⱼ‖`` with ``‖xᵢ − xⱼ‖ = √(2 − 2 sᵢⱼ)``; chunked, ``O(n²·d)``.
    (Under the cosine distance the remote-clique score is :func:`mean_pairwise_cosine_distance`.)
    """
    return neighbour_stats(x, block=block).remote_clique


def mean_nn_distance(x: FloatArray, *, block: int | None = None) -> float:
    """Mean cosine distance from each sample to its nearest other sample, ``1/n Σᵢ (1 − maxⱼ≠ᵢ sᵢⱼ)``; chunked."""
    return neighbour_stats(x, block=block).mean_nn_distance


def near_duplicate_rate(
    x: FloatArray,
    threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    *,
    block: int | None = None,
) -> float:
    """Fraction of samples whose nearest other sample has cosine similarity ``≥ threshold``; chunked."""
    return neighbour_stats(x, threshold, block=block).near_duplicate_rate


def embedding_summary(
    x: FloatArray,
    threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    *,
    block: int | None = None,
) -> dict[str, float | int | None]:
    """All embedding-space metrics of ``X`` as a flat dict (``None`` where a metric needs 2+ samples).

    Keys: ``n``, ``dim``, ``mean_cosine_similarity``, ``mean_cosine_distance``, ``vendi``,
    ``vendi_normalized`` (Vendi / n), ``remote_clique``, ``mean_nn_distance``, ``near_duplicate_rate``,
    ``near_duplicate_threshold``.
    """
    n, dim = np.shape(x)
    out: dict[str, float | int | None] = {"n": int(n), "dim": int(dim)}
    vendi = vendi_score(x) if n else None
    out["vendi"] = vendi
    out["vendi_normalized"] = vendi / n if vendi is not None else None
    if n >= 2:
        sim = mean_pairwise_cosine_similarity(x)
        stats = neighbour_stats(x, threshold, block=block)
        out |= {
            "mean_cosine_similarity": sim,
            "mean_cosine_distance": 1.0 - sim,
            "remote_clique": stats.remote_clique,
            "mean_nn_distance": stats.mean_nn_distance,
            "near_duplicate_rate": stats.near_duplicate_rate,
        }
    else:
        keys = ("mean_cosine_similarity", "mean_cosine_distance", "remote_clique", "mean_nn_distance")
        out |= dict.fromkeys((*keys, "near_duplicate_rate"), None)
    out["near_duplicate_threshold"] = threshold
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
