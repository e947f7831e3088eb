"""SIGKILL at random moments, then re-run the same command: exact counts, no duplicates, no redone nodes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from test_run_e2e import CMD, check_run_dir


def completed_nodes(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM nodes")}


def tree_calls_after(db: Path, seq: int) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT node_id FROM calls WHERE seq > ? AND stage != 'leaf'", (seq,))
        return {row[0] for row in rows}


def last_seq(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM calls").fetchone()[0])


def wait_for_calls(db: Path, proc: subprocess.Popen[bytes], threshold: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                if last_seq(db) >= threshold:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.02)


def test_sigkill_then_resume_is_exact(tmp_path: Path) -> None:
    out = tmp_path / "R"
    db = out / "treesynth.db"
    env = {**os.environ, "TREESYNTH_FAKE_LATENCY_MS": "40"}
    rng = random.Random(7)
    # kill points spread over tree building (first ~45 calls) and leaf synthesis (the rest)
    thresholds = sorted({rng.randint(3, 30), rng.randint(30, 70), rng.randint(70, 120), rng.randint(120, 160)})
    kills = 0
    for threshold in thresholds:
        done_before, seq_before = (completed_nodes(db), last_seq(db)) if db.exists() else (set(), 0)
        proc = subprocess.Popen([sys.executable, "-m", "treesynth", *CMD, "--out", str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_calls(db, proc, threshold)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert not (tree_calls_after(db, seq_before) & done_before), "a completed node was expanded again"
    assert kills >= 3, "the run finished before it could be killed"
    done_before, seq_before = completed_nodes(db), last_seq(db)
    with sqlite3.connect(db) as conn:
        leaf_calls_before = conn.execute("SELECT COUNT(*) FROM leaf_calls").fetchone()[0]
    final = subprocess.run([sys.executable, "-m", "treesynth", *CMD, "--out", str(out)], env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert final.returncode == 0, final.stderr
    assert not (tree_calls_after(db, seq_before) & done_before)
    check_run_dir(out, n=500, depth=3, width=4)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 500
        # the uninterrupted final session made exactly one LLM call per new (leaf_id, call_index) key:
        # no stored leaf call was requested again
        new_keys = conn.execute("SELECT COUNT(*) FROM leaf_calls").fetchone()[0] - leaf_calls_before
        leaf_llm_calls = conn.execute("SELECT COUNT(*) FROM calls WHERE seq > ? AND stage = 'leaf'",
                                      (seq_before,)).fetchone()[0]
        assert leaf_llm_calls == new_keys
