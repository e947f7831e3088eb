"""The README's first command on the embedded default model, and the same model behind llama-cpp-python's own
OpenAI-compatible server reached through litellm (no key, no network beyond loopback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import leaf_index, read_jsonl
from test_run_e2e import treesynth

from treesynth.gate import check_sample
from treesynth.models import normalize

TASK = "GSM8K-style grade-school math word problems"


def _quiet_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["DSPY_CACHEDIR"] = str(tmp_path / "dspy-cache")  # a cold cache: every call really runs the model
    return env


def _real_samples(out: Path, n: int) -> list[dict[str, object]]:
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == n == len({normalize(str(s["text"])) for s in samples})
    assert all(check_sample(str(s["text"]), task=TASK) is None for s in samples), samples
    assert all(any(ch.isdigit() for ch in str(s["text"])) for s in samples), "math problems carry numbers"
    leaves = leaf_index(json.loads((out / "tree.json").read_text()))
    assert all(s["leaf_id"] in leaves for s in samples)
    return samples


@pytest.mark.embedded
def test_default_run_on_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "gsm-embedded"
    done = treesynth("run", TASK, "-n", "12", "--out", str(out), "-q", env=_quiet_env(tmp_path), timeout=1500)
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["config"]["model"]["model"] == "local/qwen2.5-coder-1.5b-instruct"
    assert run["llm"]["calls"] > 0 and run["llm"]["completion_tokens"] > 0
    assert run["llm"]["failed"] == 0, run["llm"]
    _real_samples(out, 12)
    assert run["counts"]["leaves"] >= 2, "the tree splits on the default model"
    assert (out / "rejected.jsonl").exists() and "rejected" in run["counts"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own server (``treesynth[server]``) on loopback with the embedded default GGUF."""
    pytest.importorskip("llama_cpp.server", reason="needs treesynth[server]")
    from treesynth.providers.local import DEFAULT_LOCAL_MODEL, MODELS, resolve_gguf

    gguf = resolve_gguf(MODELS[DEFAULT_LOCAL_MODEL])
    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "qwen", "--n_ctx", "4096",
         "--n_threads", str(os.cpu_count() or 2), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):  # at most two minutes to load
            if server.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {server.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("llama_cpp.server did not answer within two minutes")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.embedded
def test_run_against_llama_cpp_python_server_through_litellm(tmp_path: Path, llama_cpp_server: str) -> None:
    out = tmp_path / "server-run"
    env = {**_quiet_env(tmp_path), "OPENAI_API_KEY": "unused-by-a-local-server"}
    done = treesynth("run", TASK, "--model", "openai/qwen", "--api-base", llama_cpp_server, "--depth", "1",
                     "--width", "3", "--pivots", "4", "-n", "4", "--samples-per-call", "2", "--concurrency", "1",
                     "--out", str(out), "-q", env=env, timeout=1500)
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["config"]["model"]["model"] == "openai/qwen"
    by_stage = {row["stage"]: row for row in run["llm"]["by_stage"]}
    assert by_stage["leaf"]["calls"] >= 2 and all(row["parse_failures"] == 0 for row in by_stage.values())
    _real_samples(out, 4)
