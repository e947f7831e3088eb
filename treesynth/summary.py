"""The ``run.json`` summary: status, counts, LLM ledger, timings, allocation, config and versions."""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from treesynth.config import RunConfig
from treesynth.models import Tree
from treesynth.providers.pricing import estimate_cost
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
    """``rejected`` (candidates and pivots the sample gate turned away) and ``rejected_by_reason``."""
    by_reason = store.rejection_stats()
    return {"rejected": sum(by_reason.values()), "rejected_by_reason": by_reason}


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape a run's output."""
    found = {"python": platform.python_version()}
    for package in ("treesynth", "dspy", "litellm", "pydantic", "llama-cpp-python"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def run_status(*, error: str | None, n_samples: int, target: int, failed: bool = False) -> str:
    """``complete``; ``failed`` after an unexpected error or an error before any sample; else ``partial``."""
    if error is None and n_samples == target and not failed:
        return "complete"
    return "failed" if failed or (error is not None and n_samples == 0) else "partial"


def run_summary(*, tree: Tree, store: RunStore, n_samples: int, quotas: dict[str, int], error: str | None,
                started: float, config: RunConfig, failed: bool = False,
                pending: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Build the ``run.json`` mapping for a finished, stopped or (``failed``) crashed run.

    ``pending`` names childless nodes that were never expanded (e.g. the root when the provider was
    unreachable): they are not counted as leaves.
    """
    target = config.synthesis.samples
    leaves = [leaf for leaf in tree.root.leaves() if leaf.id not in pending]
    candidates = store.candidate_stats()
    status = run_status(error=error, n_samples=n_samples, target=target, failed=failed)
    previous = store.get_meta("elapsed_seconds") or 0.0
    elapsed = previous + (time.time() - started)
    store.set_meta("elapsed_seconds", elapsed)
    return {
        "status": status,
        "error": error,
        "resume": None if status == "complete" else "re-run the same command with the same --out to resume",
        "task": tree.task.model_dump(mode="json"),
        "counts": {
            "nodes": tree.node_count(),
            "leaves": len(leaves),
            "samples": n_samples,
            "target": target,
            "shortfall": max(0, target - n_samples),
            "duplicates_removed": candidates.get("duplicate", 0),
            "unused_candidates": candidates.get("new", 0),
            **rejection_counts(store),
            "max_depth": max(node.depth for node in tree.root.walk()),
            "early_leaves": sum(1 for leaf in leaves if leaf.leaf_reason not in (None, "max depth")),
        },
        "llm": priced_ledger(store),
        "timings": {"seconds_this_session": round(time.time() - started, 3), "seconds_total": round(elapsed, 3)},
        "allocation": {"quota": quotas},
        "config": config.model_dump(mode="json"),
        "versions": versions(),
    }
