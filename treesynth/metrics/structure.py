"""Structure metrics: how samples spread over the leaves and first-level branches of the tree.

Inputs are plain data: the ``leaf_id`` and first-level branch of every sample, optionally the ``tree.json``
dict (so that leaves with no sample count too) and per-leaf quotas from ``run.json``. With ``L`` leaves,
``cₗ`` samples at leaf ``l`` and ``N = Σ cₗ``:

* normalised entropy ``H / log L`` with ``H = −Σ pₗ log pₗ``, ``pₗ = cₗ / N`` (1 = perfectly even);
* Gini coefficient ``Σₗ Σₘ |cₗ − cₘ| / (2 L² c̄)`` (0 = perfectly even, → 1 = all in one leaf);
* both are ``None`` (reported "n/a") for a one-leaf tree or no samples: there is no spread to measure;
* coverage at quota: fraction of leaves with ``cₗ ≥ quotaₗ`` (the quota defaults to the mean ``c̄``);
* per-first-level-branch shares ``N_b / N``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Branch label of samples whose path is empty (they sit at the root).
ROOT_BRANCH = "root"


@dataclass(frozen=True)
class TreeLeaf:
    """A leaf of ``tree.json``: its id and the value of its first-level ancestor (``root`` at depth 0).

    ``pool`` holds the concrete values when that ancestor is infinite (``branch`` is then the pool's label).
    """

    leaf_id: str
    branch: str
    pool: tuple[str, ...] = ()


def node_label(value: Any) -> str:
    """Display label of a node ``value``: strings as-is, lists (infinite nodes) joined with ``" | "``."""
    if value is None:
        return ROOT_BRANCH
    if isinstance(value, list):
        return " | ".join(str(v) for v in value)
    return str(value)


def branch_of_path(path: Sequence[Mapping[str, Any]]) -> str:
    """First-level branch of a sample: ``path[0]["value"]``, or ``"root"`` for an empty path."""
    if not path:
        return ROOT_BRANCH
    return node_label(path[0].get("value"))


def _walk(node: Mapping[str, Any], branch: str | None, pool: tuple[str, ...] = ()) -> Iterator[TreeLeaf]:
    children = node.get("children") or []
    if not children:
        yield TreeLeaf(leaf_id=str(node.get("id")), branch=branch or ROOT_BRANCH, pool=pool)
        return
    for child in children:
        if branch is not None:
            yield from _walk(child, branch, pool)
        else:
            value = child.get("value")
            yield from _walk(child, node_label(value), tuple(str(v) for v in value) if isinstance(value, list) else ())


def tree_leaves(tree: Mapping[str, Any]) -> list[TreeLeaf]:
    """All leaves of a ``tree.json`` dict (``{"root": node, ...}``) or of a bare node, in depth-first order."""
    root = tree.get("root", tree)
    if not isinstance(root, Mapping):
        raise ValueError("tree has no 'root' node object")
    return list(_walk(root, None))


def normalized_entropy(counts: Sequence[float]) -> float | None:
    """``H / log L`` with ``H = −Σ pₗ log pₗ`` over ``L = len(counts)`` bins (zeros included).

    1.0 for an even spread, 0.0 when all mass sits in one of several bins; ``None`` (n/a) when balance has
    no meaning: fewer than two bins (a one-leaf tree) or no mass at all.
    """
    arr = np.asarray(counts, dtype=np.float64)
    total = arr.sum()
    if len(arr) <= 1 or total <= 0:
        return None
    p = arr[arr > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(len(arr))) + 0.0


def gini(counts: Sequence[float]) -> float | None:
    """Gini coefficient ``Σᵢ Σⱼ |cᵢ − cⱼ| / (2 L² c̄)``, via the sorted form ``Σᵢ (2i − L − 1) c₍ᵢ₎ / (L Σ c)``.

    0 for an even spread, ``(L − 1) / L`` when one bin holds everything; ``None`` (n/a) for fewer than two
    bins (a one-leaf tree) or an all-zero input.
    """
    arr = np.sort(np.asarray(counts, dtype=np.float64))
    total = arr.sum()
    if len(arr) <= 1 or total <= 0:
        return None
    ranks = np.arange(1, len(arr) + 1, dtype=np.float64)
    return float(((2 * ranks - len(arr) - 1) * arr).sum() / (len(arr) * total)) + 0.0


def size_histogram(counts: Sequence[int]) -> dict[int, int]:
    """Samples-per-leaf histogram: ``{leaf size: number of leaves with that size}``, sorted by size."""
    return dict(sorted(Counter(int(c) for c in counts).items()))


def coverage_at_quota(counts: Mapping[str, int], quota: Mapping[str, float] | None = None) -> float:
    """Fraction of leaves whose count reaches their quota, ``|{l : cₗ ≥ quotaₗ}| / L``.

    ``quota`` maps leaf ids to targets; leaves missing from it (or all leaves when it is ``None``) use the
    mean count ``c̄ = N / L``.
    """
    if not counts:
        return 0.0
    mean = sum(counts.values()) / len(counts)
    targets = quota or {}
    hit = sum(1 for leaf, c in counts.items() if c >= float(targets.get(leaf, mean)))
    return hit / len(counts)


def structure_summary(
    sample_leaves: Sequence[str],
    sample_branches: Sequence[str],
    *,
    tree: Mapping[str, Any] | None = None,
    quota: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every structure metric as a JSON-ready dict.

    Args:
        sample_leaves: ``leaf_id`` of each sample.
        sample_branches: first-level branch of each sample (same order and length).
        tree: the ``tree.json`` dict; when given, leaves without samples count (as 0).
        quota: per-leaf target counts (``run.json["allocation"]["quota"]``).

    Keys: ``samples``, ``leaf_count`` (leaves considered), ``leaves_with_samples``, ``leaves_in_tree``
    (``None`` without a tree), ``unknown_leaf_samples`` (samples whose leaf is not in the tree),
    ``samples_per_leaf`` (min/mean/median/max), ``leaf_size_histogram``, ``normalized_entropy``, ``gini``,
    ``coverage_at_quota``, ``quota_source``, ``branch_shares``, ``leaf_counts``.
    """
    if len(sample_leaves) != len(sample_branches):
        raise ValueError("sample_leaves and sample_branches must have the same length")
    counts: Counter[str] = Counter(sample_leaves)
    branch_counts: Counter[str] = Counter(sample_branches)
    leaves_in_tree: int | None = None
    unknown = 0
    if tree is not None:
        leaves = tree_leaves(tree)
        leaves_in_tree = len(leaves)
        known = {leaf.leaf_id for leaf in leaves}
        unknown = sum(c for leaf_id, c in counts.items() if leaf_id not in known)
        seen = set(branch_counts)
        for leaf in leaves:
            counts.setdefault(leaf.leaf_id, 0)
            if not seen.intersection(leaf.pool):  # samples name concrete values of an infinite branch: no pool label
                branch_counts.setdefault(leaf.branch, 0)
    values = list(counts.values())
    total = len(sample_leaves)
    return {
        "samples": total,
        "leaf_count": len(counts),
        "leaves_with_samples": sum(1 for c in values if c > 0),
        "leaves_in_tree": leaves_in_tree,
        "unknown_leaf_samples": unknown,
        "samples_per_leaf": _describe(values),
        "leaf_size_histogram": {str(k): v for k, v in size_histogram(values).items()},
        "normalized_entropy": normalized_entropy(values),
        "gini": gini(values),
        "coverage_at_quota": coverage_at_quota(counts, quota),
        "quota_source": "run.json allocation" if quota else "mean samples per leaf",
        "branch_shares": {b: (c / total if total else 0.0) for b, c in branch_counts.most_common()},
        "leaf_counts": dict(counts.most_common()),
    }


def _describe(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "mean": 0.0, "median": 0.0, "max": 0.0}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "min": float(arr.min()),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "max": float(arr.max()),
    }
