"""The fake OpenAI-compatible server, through real clients (litellm, DSPy, httpx): answers, faults, determinism, CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy
import httpx
import litellm
import openai
import pytest

from treesynth.errors import ConfigError
from treesynth.signatures import GeneratePivots, sample_batch_type
from treesynth.testing.fake_server import FakeServer, FaultConfig, decide, retry_after_headers, wrong_content

USER = "[[ ## task ## ]]\nmath word problems\n\n[[ ## subspace ## ]]\n[\"difficulty: easy\"]\n\nRespond with JSON."
MESSAGES = [{"role": "system", "content": "You write datasets."}, {"role": "user", "content": USER}]
BATCH_SCHEMA = {
    "type": "object",
    "properties": {"examples": {"type": "object", "required": ["samples"], "properties": {
        "samples": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}}}},
    "required": ["examples"],
}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "Out", "strict": True, "schema": BATCH_SCHEMA}}
CHAT_BODY = {"model": "fake", "messages": MESSAGES, "response_format": JSON_SCHEMA_FORMAT, "seed": 3}


async def complete(server: FakeServer, **kwargs: Any) -> Any:
    """One litellm call against ``server`` with no retries and a bounded timeout."""
    params: dict[str, Any] = {"messages": MESSAGES, "num_retries": 0, "max_retries": 0, "timeout": 5.0}
    params.update(kwargs)
    return await litellm.acompletion(model="openai/fake", api_base=server.base_url, api_key="x", **params)


def outcome_of(response: httpx.Response) -> str:
    """How the client saw one raw answer: its status, or ``ok``/``malformed`` for a 200."""
    if response.status_code != 200:
        return str(response.status_code)
    try:
        json.loads(response.content)
    except json.JSONDecodeError:
        return "malformed"
    return "ok"


def zero_counts(**nonzero: int) -> dict[str, int]:
    counts = dict.fromkeys(("ok", "429", "500", "hang", "malformed", "invalid", "error", "burst"), 0)
    counts.update({key.removeprefix("n"): value for key, value in nonzero.items()})
    return counts


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as running:
        yield running


@pytest.fixture(scope="module")
def schema_capable_model() -> None:
    """Tell litellm that ``openai/fake`` takes JSON schemas, so DSPy's JSONAdapter sends ``json_schema``.

    Without it litellm does not know the model, DSPy falls back to ``{"type": "json_object"}`` and the
    fake model, given no schema, cannot produce the signature's fields.
    """
    litellm.register_model({"openai/fake": {"litellm_provider": "openai", "mode": "chat",
                                            "supports_response_schema": True}})


async def test_litellm_gets_a_schema_valid_answer(server: FakeServer) -> None:
    response = await complete(server, response_format=JSON_SCHEMA_FORMAT, seed=1)
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    items = json.loads(choice.message.content)["examples"]["samples"]
    assert len(items) == 2 and all(isinstance(item, str) and item for item in items)
    assert response.usage.prompt_tokens == len(USER + "You write datasets.") // 4
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    again = await complete(server, response_format=JSON_SCHEMA_FORMAT, seed=1)
    assert again.choices[0].message.content == choice.message.content  # same prompt and seed, same answer
    plain = await complete(server, response_format={"type": "json_object"})
    assert isinstance(json.loads(plain.choices[0].message.content), dict)
    assert server.counts == zero_counts(ok=3) and server.requests_total == 3


@pytest.mark.usefixtures("schema_capable_model")
def test_dspy_predict_returns_a_typed_output(server: FakeServer) -> None:
    batch = sample_batch_type(3)
    signature = GeneratePivots.with_updated_fields("examples", type_=batch)
    lm = dspy.LM("openai/fake", api_base=server.base_url, api_key="x", engine="litellm", cache=False,
                 num_retries=0, timeout=5.0)
    with dspy.context(adapter=dspy.JSONAdapter()):
        out = dspy.Predict(signature)(task="math word problems", subspace=["difficulty: easy"], lm=lm)
    assert isinstance(out.examples, batch)
    # exactly three samples, anchored in the subspace: the server received and honoured the JSON schema
    assert len(out.examples.samples) == 3 and all("difficulty: easy" in item for item in out.examples.samples)
    assert server.counts["ok"] == 1


async def test_rate_limit_carries_retry_after() -> None:
    with FakeServer(FaultConfig(rate_429=1.0, retry_after=2)) as server:
        with pytest.raises(litellm.RateLimitError) as caught:
            await complete(server)
        assert caught.value.status_code == 429
        assert caught.value.litellm_response_headers["retry-after"] == "2"
        async with httpx.AsyncClient(timeout=5.0) as client:
            raw = await client.post(f"{server.base_url}/chat/completions", json=CHAT_BODY)
        assert raw.status_code == 429 and raw.headers["Retry-After"] == "2"
        assert raw.json()["error"]["type"] == "rate_limit_error"
        assert server.counts == zero_counts(n429=2)


async def test_server_error() -> None:
    with FakeServer(FaultConfig(rate_500=1.0)) as server:
        with pytest.raises(litellm.InternalServerError) as caught:
            await complete(server)
        assert caught.value.status_code == 500
        assert server.counts == zero_counts(n500=1)


async def test_hang_makes_the_client_time_out() -> None:
    with FakeServer(FaultConfig(rate_hang=1.0, hang_seconds=20)) as server:
        started = time.monotonic()
        with pytest.raises(litellm.Timeout):
            await complete(server, timeout=0.5)
        assert time.monotonic() - started < 5
        assert server.counts == zero_counts(hang=1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5, "closing must cancel the hung answer"


async def test_malformed_body_fails_to_parse() -> None:
    with FakeServer(FaultConfig(rate_malformed=1.0)) as server:
        async with httpx.AsyncClient(timeout=5.0) as client:
            raw = await client.post(f"{server.base_url}/chat/completions", json=CHAT_BODY)
        assert raw.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw.content)
        with pytest.raises(openai.APIError):
            await complete(server)
        assert server.counts == zero_counts(malformed=2)


def test_same_seed_same_fault_sequence() -> None:
    config = FaultConfig(rate_429=0.25, rate_500=0.25, rate_malformed=0.25, seed=7)
    runs = []
    for seed in (7, 7, 8):
        with FakeServer(dataclasses.replace(config, seed=seed)) as server, \
                httpx.Client(base_url=server.base_url, timeout=5.0) as client:
            runs.append(([outcome_of(client.post("/chat/completions", json=CHAT_BODY)) for _ in range(40)],
                         server.counts))
    (first, first_counts), (second, second_counts), (other, _) = runs
    assert first == second and first_counts == second_counts
    assert first == [decide(config, index).outcome.value for index in range(40)]
    assert set(first) == {"ok", "429", "500", "malformed"}
    assert other != first


async def test_latency_does_not_block_concurrent_requests() -> None:
    """Every request waits out its own drawn latency, all 50 at once: the injected sleep returns only when
    all 50 are inside it, so a server that answered one request at a time would never answer the first."""
    config = FaultConfig(latency_ms=150, jitter_ms=10)
    delays: list[float] = []
    all_waiting = asyncio.Event()  # bound to the server's loop by its first wait()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 50:
            all_waiting.set()
        await all_waiting.wait()

    with FakeServer(config, sleep=sleep) as server:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0, limits=limits) as client:
            answers = await asyncio.gather(*(client.post("/chat/completions", json=CHAT_BODY) for _ in range(50)))
        assert [a.status_code for a in answers] == [200] * 50
        assert server.counts["ok"] == 50
    # the delays applied are the seeded draws, in arrival order, within latency +- jitter
    assert delays == [decide(config, index).delay for index in range(50)]
    assert all(0.14 <= delay <= 0.16 for delay in delays) and len(set(delays)) > 1


def test_routes_and_bad_requests(server: FakeServer) -> None:
    root = server.base_url.removesuffix("/v1")
    with httpx.Client(base_url=root, timeout=5.0) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/v1/models").json()["data"][0]["id"] == "fake"
        assert client.post("/chat/completions", json=CHAT_BODY).status_code == 200
        assert client.get("/v1/chat/completions").status_code == 405
        assert client.get("/nowhere").status_code == 404
        bad = client.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        assert client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": True}).status_code == 400
        assert client.post("/v1/chat/completions", json={"model": "fake"}).status_code == 400
    assert server.counts == zero_counts(ok=1, invalid=3)


def test_retry_after_as_an_http_date() -> None:
    """The date form is ``now`` plus the wait, rounded up to the next second, in IMF-fixdate (GMT)."""
    headers = dict(retry_after_headers(FaultConfig(retry_after=2.5, retry_after_form="date"), now=lambda: 1e9 + 0.2))
    assert headers["Retry-After"] == "Sun, 09 Sep 2001 01:46:43 GMT" and headers["retry-after-ms"] == "2500"
    assert dict(retry_after_headers(FaultConfig(retry_after=2.5)))["Retry-After"] == "3"


def test_a_burst_covers_exactly_its_window() -> None:
    config = FaultConfig(burst="503", burst_start=2, burst_length=3, rate_500=0.5, seed=1)
    with FakeServer(config) as server, httpx.Client(base_url=server.base_url, timeout=5.0) as client:
        statuses = [client.post("/chat/completions", json=CHAT_BODY).status_code for _ in range(6)]
    assert statuses[2:5] == [503, 503, 503] and 503 not in statuses[:2] + statuses[5:]
    assert server.counts["burst"] == 3


@pytest.mark.parametrize("kind", ["truncated", "reset", "down"])
def test_broken_transport_fails_the_read_and_the_next_request_is_served(kind: str) -> None:
    with FakeServer(FaultConfig(burst=kind, burst_length=1)) as server:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            httpx.post(f"{server.base_url}/chat/completions", json=CHAT_BODY, timeout=5.0)
        assert httpx.post(f"{server.base_url}/chat/completions", json=CHAT_BODY, timeout=5.0).status_code == 200


def test_slow_loris_sends_headers_then_trickles() -> None:
    """Headers at once, then one byte per pause: each read is quick, so only a whole-call timeout stops it."""
    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)

    with FakeServer(FaultConfig(burst="slow", burst_length=1, hang_seconds=30.0), sleep=record) as server:
        raw = httpx.post(f"{server.base_url}/chat/completions", json=CHAT_BODY, timeout=5.0)
    assert raw.status_code == 200 and json.loads(raw.content)["choices"]
    assert len(pauses) == len(raw.content) and sum(pauses) == pytest.approx(30.0)


def test_wrong_content_kinds() -> None:
    content = json.dumps({"proposal": {"criterion": "topic", "values": ["a", "b", "c"]}, "n": 2})
    prompt = "[[ ## excluded_criteria ## ]]\n[\"difficulty\"]\n"
    assert json.loads(wrong_content("empty", content, prompt))["proposal"]["values"] == []
    assert json.loads(wrong_content("duplicates", content, prompt))["proposal"]["values"] == ["a", "a", "a"]
    assert json.loads(wrong_content("out_of_range", content, prompt))["n"] == 1002
    assert json.loads(wrong_content("ancestor", content, prompt))["proposal"]["criterion"] == "difficulty"
    assert json.loads(wrong_content("echo", content, prompt))["proposal"]["values"] == [prompt] * 3
    with pytest.raises(json.JSONDecodeError):
        json.loads(wrong_content("invalid_json", content, prompt))


@pytest.mark.parametrize("bad", [{"rate_429": 1.5}, {"rate_500": 0.6, "rate_hang": 0.6}, {"latency_ms": -1.0},
                                 {"burst": "teapot"}, {"retry_after_form": "minutes"}, {"burst_length": -1}])
def test_fault_config_rejects_impossible_values(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        FaultConfig(**bad)


def test_cli_prints_the_listening_line_and_serves() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "treesynth.testing.fake_server", "--port", "0", "--seed", "0",
                             "--latency-ms", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=10), "no listening line within 10 s"
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("/v1")
        base_url = line.removeprefix("listening on ")
        answer = httpx.post(f"{base_url}/chat/completions", json=CHAT_BODY, timeout=5.0)
        assert answer.status_code == 200
        assert len(json.loads(answer.json()["choices"][0]["message"]["content"])["examples"]["samples"]) == 2
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "stopped after 1 requests" in stderr
