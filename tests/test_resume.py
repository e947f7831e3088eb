"""SIGKILL at random moments, then re-run the same command: exact counts, no duplicates, no redone nodes."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import read_jsonl
from test_run_e2e import CMD, check_run_dir

from treesynth.cli._common import INTERRUPTED
from treesynth.config import RunConfig
from treesynth.errors import RESUME_HINT
from treesynth.pipeline import Progress, TreeSynth
from treesynth.record import read_record


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


TASK = "grade-school math word problems"


def count_samples(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


def wait_for_samples(db: Path, proc: subprocess.Popen[str], threshold: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if db.exists() and count_samples(db) >= threshold:
                return
        except sqlite3.OperationalError:  # its tables are not created yet
            pass
        time.sleep(0.02)


@pytest.mark.parametrize(("error", "status"), [(KeyboardInterrupt, "interrupted"), (RuntimeError, "failed")])
def test_an_interrupt_or_a_crash_exports_what_exists_and_the_resume_reports_it(
        tmp_path: Path, fake_config: Callable[..., RunConfig], error: type[BaseException], status: str) -> None:
    raised: list[bool] = []

    def stop(progress: Progress) -> None:
        if progress.samples >= 12 and not raised:
            raised.append(True)
            raise error("stop")

    with pytest.raises((error, ExceptionGroup)):  # a crash inside a task group comes out as a group
        TreeSynth(fake_config(), on_progress=stop).run(TASK, tmp_path)
    stopped = read_record(tmp_path / "run.json")
    partial = read_jsonl(tmp_path / "samples.jsonl")
    assert stopped.status == status and stopped.resume == RESUME_HINT and stopped.error is not None
    assert 12 <= len(partial) == stopped.counts.samples < 40
    assert stopped.sessions == 1 and stopped.reused is None
    resumed = TreeSynth(fake_config()).run(TASK, tmp_path).record
    assert resumed is not None and resumed.status == "complete" and resumed.sessions == 2
    assert resumed.reused is not None and resumed.reused.status == status
    assert (resumed.reused.samples, resumed.reused.calls) == (len(partial), stopped.llm.calls)
    assert {s["id"] for s in partial} <= {s["id"] for s in read_jsonl(tmp_path / "samples.jsonl")}
    # the interrupted session's time is part of the total
    timings = resumed.timings
    assert timings.seconds_total == pytest.approx(stopped.timings.seconds_total + timings.seconds_this_session,
                                                  abs=0.002)
    assert timings.seconds_total > timings.seconds_this_session


def test_ctrl_c_on_the_cli_leaves_run_json_and_partial_samples_and_the_resume_says_what_it_reused(
        tmp_path: Path) -> None:
    out = tmp_path / "R"
    db = out / "treesynth.db"
    env = {**os.environ, "TREESYNTH_FAKE_LATENCY_MS": "150"}  # slow enough to be caught mid-run on a busy machine
    proc = subprocess.Popen([sys.executable, "-m", "treesynth", *CMD, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_samples(db, proc, 20)  # into leaf synthesis
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == f"error: {INTERRUPTED}"
    run = read_record(out / "run.json")
    assert run.status == "interrupted" and run.resume == RESUME_HINT
    assert 0 < run.counts.samples == len(read_jsonl(out / "samples.jsonl")) < 500
    again = subprocess.run([sys.executable, "-m", "treesynth", *[a for a in CMD if a != "--quiet"], "--out", str(out)],
                           env={**os.environ}, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert re.fullmatch(rf"resumed: \d+/\d+ nodes, {run.counts.samples} samples, {run.llm.calls} LLM calls from "
                        "earlier sessions", again.stderr.splitlines()[0]), again.stderr
    lines = [line for line in again.stderr.splitlines() if not line.startswith("warning: ")]
    assert lines[-1].startswith("progress: 500/500 samples")  # stderr is no terminal: plain
    final = read_record(out / "run.json")
    assert f"{final.llm.calls} LLM calls" in again.stdout and f"calls {final.llm.calls}" in again.stderr
    assert final.sessions == 2 and final.reused is not None and final.reused.status == "interrupted"
