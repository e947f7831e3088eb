"""Kill-anywhere harness: SIGKILL a CLI command at seeded moments, re-run it, compare with an uninterrupted run.

A :class:`Scenario` is one command line (run from its own working directory, with relative paths, so two
working directories produce the same bytes), the files whose content must come out identical, and a
normalizer for the few that legitimately carry a path or a timing. :func:`kill_and_resume` runs it once
uninterrupted, then again in a fresh directory: started, killed with SIGKILL when the call ledger (every
``treesynth.db`` under the directory, read-only) reaches a seeded target plus a seeded delay (so kills also
land between calls: in tree building, synthesis, export, a study write), re-started until it exits 0.

The call accounting is per ``(ledger, node)``: a call is *settled* once its result is stored (the node in
``nodes``, the routes in ``routes``, the leaf call in ``leaf_calls``, the personas in ``meta``); calls
recorded but not settled at a kill are *in flight*. A resumed command may repeat only those: for every
node, ``calls after kills - calls uninterrupted`` lies between 0 and the calls in flight at the kills.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TREE_STAGES = {"criterion", "pivots", "coverage"}
LEAF_STAGES = {"leaf", "persona", "evol", "temperature"}
Key = tuple[str, str]
"""(ledger path relative to the working directory, node id)."""


@dataclass(frozen=True)
class Scenario:
    """One command: its arguments (relative to its working directory) and the outputs that must match."""

    name: str
    args: list[str]
    compared: list[str]
    """Glob patterns (relative to the working directory) of the files compared after normalization."""
    normalize: Callable[[str, bytes], bytes] = lambda name, data: data
    latency_ms: int = 40
    prepare: Callable[[Path], None] = lambda work: None
    summary: Callable[[Path], bytes] | None = None
    """What else must match, read from the working directory (e.g. a study's finished trials)."""


@dataclass
class Outcome:
    """What a killed-and-resumed command went through."""

    kills: int = 0
    finished_before_kill: int = 0
    sessions: int = 0
    in_flight: Counter[Key] = field(default_factory=Counter)
    redone: int = 0
    baseline_calls: int = 0
    final_calls: int = 0
    samples: int = 0


def _ledgers(work: Path) -> list[Path]:
    return sorted(work.rglob("treesynth.db"))


def _read(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return list(conn.execute(sql))
    except sqlite3.OperationalError:  # not created yet, or its tables are not
        return []


def call_counts(work: Path) -> Counter[Key]:
    """Calls in the ledgers, per (ledger, node)."""
    counts: Counter[Key] = Counter()
    for db in _ledgers(work):
        rel = str(db.relative_to(work))
        for node, n in _read(db, "SELECT COALESCE(node_id, ''), COUNT(*) FROM calls GROUP BY node_id"):
            counts[rel, str(node)] += int(n)  # type: ignore[call-overload]
    return counts


def in_flight(work: Path) -> Counter[Key]:
    """Calls recorded whose result is not stored, per (ledger, node)."""
    out: Counter[Key] = Counter()
    for db in _ledgers(work):
        rel = str(db.relative_to(work))
        nodes = {r[0] for r in _read(db, "SELECT id FROM nodes")}
        routed = {r[0] for r in _read(db, "SELECT DISTINCT node_id FROM routes")}
        stored = dict(_read(db, "SELECT leaf_id, COUNT(*) FROM leaf_calls GROUP BY leaf_id"))
        personas = bool(_read(db, "SELECT 1 FROM meta WHERE key = 'personas'"))
        rows = _read(db, "SELECT stage, COALESCE(node_id, ''), COUNT(*) FROM calls GROUP BY stage, node_id")
        for stage, node, n in rows:
            count = int(n)  # type: ignore[call-overload]
            if (stage in TREE_STAGES and node not in nodes) or (stage == "routing" and node not in routed):
                out[rel, str(node)] += count
            elif stage in LEAF_STAGES:
                out[rel, str(node)] += max(0, count - int(stored.get(node, 0)))  # type: ignore[call-overload]
            elif stage == "personas" and not personas:
                out[rel, str(node)] += count
    return +out


def fingerprints(work: Path, scenario: Scenario) -> dict[str, str]:
    """sha256 of every compared file after normalization (the working directory's path made neutral)."""
    found: dict[str, str] = {}
    for pattern in scenario.compared:
        for path in sorted(work.glob(pattern)):
            name = str(path.relative_to(work))
            data = path.read_bytes().replace(str(work.resolve()).encode(), b"<WORK>")
            found[name] = hashlib.sha256(scenario.normalize(name, data)).hexdigest()
    if scenario.summary is not None:
        found["summary"] = hashlib.sha256(scenario.summary(work)).hexdigest()
    return found


def _env(scenario: Scenario) -> dict[str, str]:
    return {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
            "TREESYNTH_FAKE_LATENCY_MS": str(scenario.latency_ms)}


def run_to_end(work: Path, scenario: Scenario, attempts: int = 3) -> subprocess.CompletedProcess[str]:
    """Run the command until it exits 0 (a resume may need one more session); fail after ``attempts``."""
    done = None
    for _ in range(attempts):
        done = subprocess.run([sys.executable, "-m", "treesynth", *scenario.args], cwd=work, env=_env(scenario),
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode == 0:
            return done
    assert done is not None
    raise AssertionError(f"{scenario.name} did not finish after {attempts} sessions: {done.stderr[-3000:]}")


def _kill_at(work: Path, scenario: Scenario, target: int, delay: float) -> bool:
    """Start the command, SIGKILL it ``delay`` s after the ledger holds ``target`` calls; False if it ended first."""
    proc = subprocess.Popen([sys.executable, "-m", "treesynth", *scenario.args], cwd=work, env=_env(scenario),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if sum(call_counts(work).values()) >= target:
                break
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        return True
    finally:
        proc.kill()
        proc.wait(timeout=60)


def kill_and_resume(root: Path, scenario: Scenario, kills: int, seed: int) -> Outcome:
    """Run ``scenario`` uninterrupted under ``root/base``, then killed ``kills`` times and resumed under
    ``root/killed``; assert identical outputs and no settled call redone, and return the counts."""
    base, killed = root / "base", root / "killed"
    for work in (base, killed):
        work.mkdir(parents=True)
        scenario.prepare(work)
    run_to_end(base, scenario, attempts=1)
    expected, base_calls = fingerprints(base, scenario), call_counts(base)
    total = sum(base_calls.values())
    assert expected and total, f"{scenario.name}: the uninterrupted run wrote nothing to compare"
    rng = random.Random(seed)
    # targets spread over the whole run; the delay (up to ~3 calls' latency) moves kills between calls too
    targets = sorted(rng.choices(range(total + 1), k=kills))
    outcome = Outcome(baseline_calls=total)
    for target in targets:
        outcome.sessions += 1
        if not _kill_at(killed, scenario, target, rng.uniform(0, 3 * scenario.latency_ms / 1000)):
            outcome.finished_before_kill += 1
            continue
        outcome.kills += 1
        outcome.in_flight.update(in_flight(killed))
    run_to_end(killed, scenario)
    outcome.sessions += 1
    found = fingerprints(killed, scenario)
    differ = sorted(name for name in expected.keys() | found.keys() if expected.get(name) != found.get(name))
    assert not differ, f"{scenario.name}: outputs differ after kills: {differ}"
    after = call_counts(killed)
    outcome.final_calls = sum(after.values())
    for key in base_calls.keys() | after.keys():
        extra = after[key] - base_calls[key]
        assert 0 <= extra <= outcome.in_flight[key], (f"{scenario.name}: {key} made {after[key]} calls, "
                                                      f"{base_calls[key]} uninterrupted, "
                                                      f"{outcome.in_flight[key]} in flight at the kills")
        outcome.redone += extra
    return outcome


def record_line(scenario: Scenario, outcome: Outcome) -> str:
    """One JSON line for benchmarks/RESULTS.md."""
    return json.dumps({"command": scenario.name, "kills": outcome.kills,
                       "finished_before_kill": outcome.finished_before_kill, "sessions": outcome.sessions,
                       "calls_uninterrupted": outcome.baseline_calls, "calls_after_kills": outcome.final_calls,
                       "calls_redone": outcome.redone, "in_flight_at_kills": sum(outcome.in_flight.values())})
