"""Helpers of the Ray executor tests: configs, and a hook on the run's :class:`RayExecutor`."""

from __future__ import annotations

import inspect
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from treesynth.config import RunConfig
from treesynth.executors.ray_pool import RayExecutor

TASK = "grade-school math word problems"


def config(kind: str, n: int = 60, **overrides: Any) -> RunConfig:
    """A small fake-model run (depth 2, width 3) under executor ``kind`` with two workers."""
    return RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 2, "tree.width": 3,
                                       "synthesis.samples": n, "synthesis.samples_per_call": 5, "concurrency": 8,
                                       "executor.kind": kind, "executor.workers": 2 if kind == "ray" else None,
                                       **overrides})


@contextmanager
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Record the run's RayExecutor (``seen["executor"]``) and its limits board just before it closes
    (``seen["stats"]``); the functions in ``seen["on_start"]`` (sync or async) get the executor once started."""
    seen: dict[str, Any] = {}
    start, close = RayExecutor.start, RayExecutor.aclose

    async def started(self: RayExecutor) -> None:
        await start(self)
        seen["executor"] = self
        for hook in seen.get("on_start", []):
            done = hook(self)
            if inspect.isawaitable(done):
                await done

    async def closing(self: RayExecutor) -> None:
        seen["stats"] = await self.board_stats()
        seen["resent"] = self.pool.resent
        await close(self)

    monkeypatch.setattr(RayExecutor, "start", started)
    monkeypatch.setattr(RayExecutor, "aclose", closing)
    yield seen


def leaf_ledger(out: Path) -> tuple[int, int]:
    """Leaf calls in the run's ledger, and leaf calls stored (one row per ``(leaf_id, call_index)``)."""
    summary = json.loads((out / "run.json").read_text())
    booked = sum(row["calls"] for row in summary["llm"]["by_stage"] if row["stage"] == "leaf")
    with sqlite3.connect(out / "treesynth.db") as db:
        stored = int(db.execute("SELECT COUNT(*) FROM leaf_calls").fetchone()[0])
    return booked, stored


def sample_lines(out: Path) -> list[dict[str, Any]]:
    """``samples.jsonl`` as records."""
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
