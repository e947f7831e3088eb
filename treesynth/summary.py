"""The parts of ``run.json`` computed from a run's store: counts, the priced ledger, status and versions."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from treesynth.models import Node, Tree
from treesynth.neardup import NEAR_DUPLICATE
from treesynth.providers.pricing import estimate_cost
from treesynth.record import Counts, RunStatus
from treesynth.store import RunStore


def priced_ledger(store: RunStore) -> dict[str, Any]:
    """The call ledger with an estimated cost per stage and model and in total (``None`` if unknown)."""
    ledger = store.ledger()
    total: float | None = 0.0
    for row in ledger["by_stage"]:
        row["cost_usd"] = estimate_cost(row["model"], row["prompt_tokens"], row["completion_tokens"])
        total = None if total is None or row["cost_usd"] is None else total + row["cost_usd"]
    ledger["cost_usd"] = total
    return ledger


def rejection_counts(store: RunStore) -> dict[str, Any]:
    """``rejected`` (candidates and pivots the sample gate turned away), ``rejected_by_reason`` and
    ``near_duplicates`` (the rejected candidates that near-duplicated an accepted sample)."""
    by_reason = store.rejection_stats()
    return {"rejected": sum(by_reason.values()), "rejected_by_reason": by_reason,
            "near_duplicates": by_reason.get(NEAR_DUPLICATE, 0)}


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape a run's output."""
    found = {"python": platform.python_version()}
    for package in ("treesynth", "dspy", "litellm", "pydantic", "llama-cpp-python"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def run_status(*, error: str | None, n_samples: int, target: int, stopped: RunStatus | None = None) -> RunStatus:
    """``stopped`` when the run ended early (``failed``, ``interrupted``); ``complete``; ``failed`` after an error
    before any sample; else ``partial``."""
    if stopped is not None:
        return stopped
    if error is None and n_samples == target:
        return "complete"
    return "failed" if error is not None and n_samples == 0 else "partial"


def run_counts(*, tree: Tree, store: RunStore, n_samples: int, target: int,
               pending: frozenset[str] = frozenset()) -> Counts:
    """The ``counts`` of a run's ``run.json``.

    ``pending`` names childless nodes that were never expanded (e.g. the root when the provider was
    unreachable): they are not counted as leaves.
    """
    leaves = [leaf for leaf in tree.root.leaves() if leaf.id not in pending]
    candidates = store.candidate_stats()
    return Counts(
        nodes=tree.node_count(), leaves=len(leaves), samples=n_samples, target=target,
        shortfall=max(0, target - n_samples), duplicates_removed=candidates.get("duplicate", 0),
        unused_candidates=candidates.get("new", 0), **rejection_counts(store),
        max_depth=max(node.depth for node in tree.root.walk()),
        early_leaves=sum(1 for leaf in leaves if leaf.leaf_reason not in (None, "max depth")),
        infinite_splits=sum(1 for node in tree.root.walk() if is_infinite_split(node)),
    )


def is_infinite_split(node: Node) -> bool:
    """Whether ``node``'s split became a single infinite child instead of separate branches."""
    return len(node.children) == 1 and node.children[0].infinite
