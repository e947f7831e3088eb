"""Fixtures for the metrics tests: a small hand-made run directory in the engine's output format."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TOPICS = {
    "a1": ("apples", "market", "coins"),
    "a2": ("trains", "station", "minutes"),
    "b1": ("tanks", "water", "litres"),
    "b2": ("<script>alert(1)</script>", "garden", "rows & columns"),
}
BRANCH = {"a1": "easy", "a2": "easy", "b1": "hard", "b2": "hard"}
SECOND = {"a1": "shopping", "a2": "travel", "b1": "volume", "b2": "geometry"}


def leaf(node_id: str, value: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "depth": 2,
        "value": value,
        "criterion": None,
        "infinite": False,
        "pivots": [],
        "children": [],
    }


def make_tree() -> dict[str, Any]:
    def branch(node_id: str, value: str, leaves: list[str]) -> dict[str, Any]:
        return {
            "id": node_id,
            "depth": 1,
            "value": value,
            "criterion": "topic",
            "infinite": False,
            "pivots": ["p1", "p2"],
            "children": [leaf(k, SECOND[k]) for k in leaves],
        }

    root = {
        "id": "root",
        "depth": 0,
        "value": None,
        "criterion": "difficulty",
        "infinite": False,
        "pivots": ["How many apples?", "A train leaves at 3pm"],
        "children": [branch("a", "easy", ["a1", "a2"]), branch("b", "hard", ["b1", "b2"])],
    }
    return {"task": {"description": "Grade-school math word problems"}, "config": {"depth": 2}, "root": root}


def make_samples(per_leaf: int = 6, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    samples = []
    for leaf_id, (thing, place, unit) in TOPICS.items():
        for k in range(per_leaf):
            n, m = rng.randint(2, 99), rng.randint(2, 99)
            text = f"Sam has {n} {thing} at the {place}; he gets {m} more {unit}. How many now? Variant {k}."
            path = [
                {"criterion": "difficulty", "value": BRANCH[leaf_id]},
                {"criterion": "topic", "value": SECOND[leaf_id]},
            ]
            samples.append({"id": f"{leaf_id}-{k}", "leaf_id": leaf_id, "path": path, "text": text})
    return samples


def write_run_dir(out: Path, per_leaf: int = 6, seed: int = 0) -> Path:
    out.mkdir(parents=True)
    samples = make_samples(per_leaf, seed)
    (out / "tree.json").write_text(json.dumps(make_tree(), indent=2))
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    run = {"status": "complete", "allocation": {"quota": dict.fromkeys(TOPICS, per_leaf)}}
    (out / "run.json").write_text(json.dumps(run))
    return out


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory with 4 leaves × 6 samples under two first-level branches."""
    return write_run_dir(tmp_path / "run1")


@pytest.fixture
def make_run_dir() -> Callable[..., Path]:
    """Factory: ``make_run_dir(out, per_leaf=6, seed=0)`` writes a run directory at ``out``."""
    return write_run_dir


@pytest.fixture
def tree_and_samples() -> Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Factory: ``tree_and_samples(per_leaf)`` returns a ``tree.json`` dict and matching samples."""

    def make(per_leaf: int = 6) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return make_tree(), make_samples(per_leaf)

    return make
