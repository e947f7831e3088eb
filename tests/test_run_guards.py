"""Guards around a run's directory and secrets (issue 14, items 4-6).

* Two processes on one run directory: the second gets one line (exit 2) and writes nothing; the lock dies with
  its holder, ``SIGKILL`` included.
* A full disk (a small tmpfs; root only): one line naming the fix, a consistent store, and a resume to
  ``complete`` once there is space.
* Secrets: credentials set in the environment appear in no file of the run directory or the caches, and in no
  output or error message, for a run, an authentication failure and a server that quotes the request's header.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import read_jsonl

from treesynth.redact import REDACTED, redact
from treesynth.rundir import LOCK_NAME, DirBusyError, DirLock
from treesynth.store import DB_NAME, RunStore
from treesynth.testing.fake_server import FakeServer, FaultConfig

TASK = "GSM8K-style grade-school math word problems"
IDENTITY = {"task": "t", "depth": 2}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``treesynth ARGS`` as a separate process (its own locks, its own environment)."""
    base = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "treesynth", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=300, check=False)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("warning:")]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# -- item 4: one process per run directory ------------------------------------------------------------------

def test_a_second_open_of_a_run_directory_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = RunStore.open(tmp_path / "r", IDENTITY)
    with pytest.raises(DirBusyError, match=r"in use by another treesynth process; wait for it to finish or "
                                           r"choose another --out$") as caught:
        RunStore.open(tmp_path / "r", IDENTITY)
    assert "\n" not in str(caught.value)
    first.close()
    RunStore.open(tmp_path / "r", IDENTITY).close()  # released on close


def test_a_directory_holding_only_a_stale_lock_file_is_still_a_fresh_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    DirLock.acquire(out).release()  # a run that died before creating its store leaves the lock file
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]
    RunStore.open(out, IDENTITY).close()


HOLDER = """
import sqlite3, sys, time
from pathlib import Path
from treesynth.store import RunStore
out = Path(sys.argv[1])
with sqlite3.connect(out / "treesynth.db") as db:
    identity = db.execute("SELECT value FROM meta WHERE key='identity'").fetchone()[0]
store = RunStore.open(out, __import__("json").loads(identity))
print("holding", flush=True)
time.sleep(600)
"""


def test_second_process_gets_one_line_and_writes_nothing_and_the_lock_dies_with_a_killed_holder(
        tmp_path: Path) -> None:
    out = tmp_path / "r"
    run = ("run", TASK, "--model", "test/fake", "--depth", "2", "--width", "3", "--out", str(out), "-q")
    assert cli(*run, "-n", "12").returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        before = snapshot(out)
        second = cli(*run, "-n", "24")  # would extend the run: refused while another process has it open
        assert second.returncode == 2
        assert error_lines(second.stderr) == [
            f"error: --out {out} is in use by another treesynth process; wait for it to finish or choose "
            "another --out"]
        assert "Traceback" not in second.stderr
        assert snapshot(out) == before  # not a byte written
        holder.send_signal(signal.SIGKILL)  # a crash: no cleanup runs, the kernel drops the flock
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
    third = cli(*run, "-n", "24")
    assert third.returncode == 0, third.stderr
    samples = read_jsonl(out / "samples.jsonl")
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert len(samples) == len({s["id"] for s in samples}) == len({s["text"] for s in samples}) == 24


def test_a_run_in_flight_refuses_a_second_run_and_a_sigkill_mid_call_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "r"
    env = {"OPENAI_API_KEY": "test-key-not-a-secret", "DSPY_CACHEDIR": str(tmp_path / "cache")}  # every call real
    shape = ("run", TASK, "--model", "openai/gpt-4o-mini", "--depth", "2", "--width", "3", "--samples-per-call", "4",
             "-n", "16", "--out", str(out), "-q")
    base = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1", **env}
    with FakeServer(FaultConfig(rate_hang=1.0, hang_seconds=600)) as server:  # the first run waits on its calls
        first = subprocess.Popen([sys.executable, "-m", "treesynth", *shape, "--api-base", server.base_url],
                                 env=base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            while server.counts.get("hang", 0) == 0:  # the first run holds the directory and is mid-call
                if first.poll() is not None:
                    pytest.fail(f"the first run ended before calling: {first.communicate()}")
                threading.Event().wait(0.05)
            before = snapshot(out)
            second = cli(*shape, "--api-base", server.base_url, env=env)
            assert snapshot(out) == before  # the second wrote nothing
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(timeout=30)
    assert second.returncode == 2 and error_lines(second.stderr) == [
        f"error: --out {out} is in use by another treesynth process; wait for it to finish or choose "
        "another --out"]
    with FakeServer(FaultConfig()) as server:  # the killed run's lock died with it: the re-run resumes
        resumed = cli(*shape, "--api-base", server.base_url, env=env)
    assert resumed.returncode == 0, resumed.stderr
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == len({s["id"] for s in samples}) == len({s["text"] for s in samples}) == 16
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_bench_and_tune_lock_their_directory(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"task: {TASK}\nmethods: [treesynth]\nmodels: [test/fake]\nsizes: [4]\nseeds: [0]\n"
                    "config:\n  tree: {depth: 1, width: 2}\nembedder: lexical\n")
    with DirLock.acquire(sweep):
        busy = cli("bench", str(spec), "--out", str(sweep))
    assert busy.returncode == 2, busy.stderr
    assert f"--out {sweep} is in use by another treesynth process" in busy.stderr
    assert [p.name for p in sweep.iterdir()] == [LOCK_NAME]
    study = tmp_path / "study"
    study.mkdir()
    with DirLock.acquire(study):
        busy = cli("tune", TASK, "--model", "test/fake", "--trials", "1", "--out", str(study))
    assert busy.returncode == 2, busy.stderr
    assert f"--out {study} is in use by another treesynth process" in busy.stderr
    assert [p.name for p in study.iterdir()] == [LOCK_NAME]


# -- item 5: a full disk ----------------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs (root only; skipped elsewhere), unmounted afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_with_one_line_and_the_run_resumes_once_there_is_space(small_tmpfs: Path) -> None:
    out = small_tmpfs / "r"
    run = ("run", TASK, "--model", "test/fake", "-n", "400", "--out", str(out), "-q")
    full = cli(*run)
    assert full.returncode == 1
    assert error_lines(full.stderr) == [
        f"error: no space left on the disk of {out}; free space there (or move the directory to a larger disk and "
        "point --out at it), then re-run the same command to resume"]
    with sqlite3.connect(out / DB_NAME) as db:  # consistent: every step was one transaction
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = db.execute("SELECT COUNT(*), COUNT(DISTINCT norm) FROM samples").fetchone()
    assert kept[0] == kept[1] < 400
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    resumed = cli(*run)
    assert resumed.returncode == 0, resumed.stderr
    samples = read_jsonl(out / "samples.jsonl")
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert len(samples) == len({s["id"] for s in samples}) == len({s["text"] for s in samples}) == 400


# -- item 6: secrets ------------------------------------------------------------------------------------------

MARKER = "TSMARKER7f3c"
SECRETS = {"OPENAI_API_KEY": f"sk-{MARKER}-openai-0123456789abcdef",
           "ANTHROPIC_API_KEY": f"sk-ant-{MARKER}-anthropic-0123456789",
           "HF_TOKEN": f"hf_{MARKER}huggingface0123456789"}


class _EchoHandler(BaseHTTPRequestHandler):
    """A provider that refuses every call and quotes the request's headers back (some proxies do)."""

    status = 401

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        quoted = f"{self.headers.get('authorization')} is not a valid key (headers: {dict(self.headers)})"
        body = json.dumps({"error": {"message": quoted, "type": "invalid_request_error"}}).encode()
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@contextmanager
def echo_server(status: int) -> Iterator[str]:
    handler = type("Echo", (_EchoHandler,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def leaks(root: Path, *texts: str) -> list[str]:
    """Where the marker appears: files under ``root`` (binary too) and the given texts."""
    found = [str(p) for p in root.rglob("*") if p.is_file() and MARKER.encode() in p.read_bytes()]
    return found + [text[:200] for text in texts if MARKER in text]


def test_redact_replaces_credential_values_and_token_shapes() -> None:
    env = {"OPENAI_API_KEY": "abcdefgh12345678", "PATH": "/usr/bin:/bin:/usr/local/bin", "SHORT_KEY": "abc"}
    text = "key abcdefgh12345678 in /usr/bin:/bin:/usr/local/bin; Authorization: Bearer xyz123456789 hf_abcdefghijk abc"
    assert redact(text, env) == (f"key {REDACTED} in /usr/bin:/bin:/usr/local/bin; Authorization: Bearer {REDACTED} "
                                 f"hf_{REDACTED} abc")


def test_no_secret_reaches_a_file_a_cache_or_a_message(tmp_path: Path) -> None:
    env = {**SECRETS, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache"), "TREESYNTH_CACHE_DIR": str(tmp_path / "ts-cache"),
           "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"), "LITELLM_LOG": "DEBUG"}
    outputs: list[str] = []
    shape = ("--depth", "1", "--width", "2", "--samples-per-call", "3", "-n", "6", "--model", "openai/gpt-4o-mini")
    with FakeServer(FaultConfig(rate_500=0.2, seed=3)) as server:  # the key is sent with every call
        ok = cli("run", TASK, *shape, "--api-base", server.base_url, "--out", str(tmp_path / "ok"), env=env)
    assert ok.returncode == 0, ok.stderr
    outputs += [ok.stdout, ok.stderr]
    for status in (401, 500):  # an auth failure, and a server error quoting the headers on every attempt
        with echo_server(status) as base:
            failed = cli("run", TASK, *shape, "--api-base", base, "--out", str(tmp_path / f"failed-{status}"),
                         "--config", str(_fast_failure(tmp_path)), env=env)
        assert failed.returncode == 1, failed.stderr
        outputs += [failed.stdout, failed.stderr]
    ledger = sqlite3.connect(tmp_path / "failed-500" / DB_NAME).execute("SELECT error FROM calls").fetchall()
    assert ledger and all(f"Bearer {REDACTED}" in error for (error,) in ledger)  # the server's text, redacted
    assert leaks(tmp_path, *outputs) == []


def _fast_failure(tmp_path: Path) -> Path:
    config = tmp_path / "fast-failure.yaml"
    config.write_text("model:\n  attempts: 2\n  failure_limit: 2\n  cache: false\n")
    return config
