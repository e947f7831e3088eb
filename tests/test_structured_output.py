"""Structured output per model: each dialect's exact response_format on the wire, ``auto``'s fallback
against a llama-cpp-python-like server, explicit settings that never fall back, the tolerant repair of
near-misses, and the early stop when every call fails to parse."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args

import dspy
import httpx
import pytest
from dspy.utils.exceptions import AdapterParseError, LMServerError
from pydantic import BaseModel, Field
from test_run_e2e import treesynth

from treesynth.config import RunConfig, StructuredOutput
from treesynth.errors import ConfigError, ProviderError
from treesynth.providers import CallRecord, Gateway, RetryPolicy, StructuredOutputs, make_lm
from treesynth.providers.adapter import MemoJSONAdapter
from treesynth.providers.context import lm_context
from treesynth.providers.repair import repair_output, wrapper_field
from treesynth.providers.structured import (
    DIALECTS,
    SETTINGS,
    auto_dialect,
    output_schema,
    refuses_response_format,
    response_format,
)
from treesynth.testing.fake_server import (
    LLAMA_CPP_REFUSAL,
    FakeServer,
    FaultConfig,
    build_parser,
    config_from_args,
)

UNREGISTERED = "openai/capture-model"  # no test registers it with litellm, so litellm does not know it
TASK = "GSM8K-style grade-school math word problems"


class Batch(BaseModel):
    """A single-field wrapper: exactly two samples."""

    samples: list[str] = Field(min_length=2, max_length=2)


class Group(BaseModel):
    value: str
    members: list[int]


class Split(BaseModel):
    criterion: str
    groups: list[Group] = Field(min_length=2)


class Write(dspy.Signature):
    """Write two samples."""

    task: str = dspy.InputField()
    batch: Batch = dspy.OutputField()


class Divide(dspy.Signature):
    """Divide the samples."""

    task: str = dspy.InputField()
    split: Split = dspy.OutputField()


class WriteWithNote(dspy.Signature):
    """Write two samples and a note."""

    task: str = dspy.InputField()
    batch: Batch = dspy.OutputField()
    note: str = dspy.OutputField()


GOOD = json.dumps({"batch": {"samples": ["Ann has three apples.", "Bo buys two pears."]}})


class CaptureServer:
    """A loopback OpenAI-compatible server that records every chat-completions body and answers ``content``."""

    def __init__(self, content: str) -> None:
        self.content = content
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                owner.bodies.append(body)
                answer = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": owner.content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> CaptureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-a-secret")


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    with CaptureServer(GOOD) as server:
        yield server


def predict(model: str, base_url: str, structured: StructuredOutputs | None, signature: Any = Write) -> Any:
    lm = make_lm(model, temperature=0.5, max_tokens=128, api_base=base_url, cache=False)
    with lm_context(structured):
        return dspy.Predict(signature)(task="math", lm=lm)


def sent_format(server: CaptureServer) -> Any:
    assert len(server.bodies) == 1
    return server.bodies[0].get("response_format", "absent")


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "test-key-not-a-secret", "DSPY_CACHEDIR": str(tmp_path / "dspy-cache"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


# --- the setting and its dialects -----------------------------------------------------------------------


def test_settings_are_the_config_literal() -> None:
    assert get_args(StructuredOutput) == SETTINGS and SETTINGS[1:] == DIALECTS


def test_role_overrides_the_model_default_and_one_model_has_one_setting() -> None:
    cfg = RunConfig().with_overrides({"model.model": "openai/a", "model.structured_output": "json_object",
                                      "model.roles.leaf.model": "openai/b",
                                      "model.roles.leaf.structured_output": "prompt"}).model
    assert cfg.structured_output_for("pivots") == "json_object" and cfg.structured_output_for("leaf") == "prompt"
    state = StructuredOutputs.from_config(cfg)
    assert (state.setting("openai/a"), state.setting("openai/b"), state.setting("openai/c")) == (
        "json_object", "prompt", "json_object")
    with pytest.raises(ConfigError, match="roles pivots and leaf both run openai/a"):
        RunConfig().with_overrides({"model.model": "openai/a", "model.roles.leaf.structured_output": "prompt"})
    with pytest.raises(ConfigError, match=r"model\.structured_output"):
        RunConfig().with_overrides({"model.structured_output": "xml"})


def test_auto_picks_a_first_dialect_by_model() -> None:
    facts = {"known": False, "supports_schema": False, "supports_format": True}
    assert auto_dialect("openai/qwen", api_base="http://h/v1", **facts) == "json_schema"
    assert auto_dialect("hosted_vllm/qwen", api_base=None, **facts) == "json_schema"
    assert auto_dialect("ollama_chat/llama3", api_base=None, **{**facts, "known": True}) == "json_schema"
    assert auto_dialect("openai/gpt-4o-mini", api_base=None, **{**facts, "known": True,
                                                                 "supports_schema": True}) == "json_schema"
    # a model litellm knows without schema support: what DSPy sends (JSON mode, or nothing)
    assert auto_dialect("groq/m", api_base=None, **{**facts, "known": True}) == "json_object"
    assert auto_dialect("groq/m", api_base=None, **{**facts, "known": True, "supports_format": False}) == "prompt"
    # in-process engines keep DSPy's own behaviour
    state = StructuredOutputs(default="json_object_schema")
    assert state.dialect(make_lm("test/fake", temperature=1.0, max_tokens=64)) is None


def test_response_format_of_each_dialect() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert response_format("json_schema", schema, "Out") == {
        "type": "json_schema", "json_schema": {"name": "Out", "schema": schema, "strict": True}}
    assert response_format("json_object_schema", schema) == {"type": "json_object", "schema": schema}
    assert response_format("json_object", schema) == {"type": "json_object"}
    assert response_format("prompt", schema) is None
    assert response_format("json_schema", None) == {"type": "json_object"}  # no strict schema: JSON mode, as DSPy


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_dialect_sends_its_exact_response_format(capture: CaptureServer, dialect: str) -> None:
    """Captured on the server, for ``openai/<m>`` + api_base that litellm does not know (nothing registered)."""
    out = predict(UNREGISTERED, capture.base_url, StructuredOutputs(default=dialect))  # type: ignore[arg-type]
    assert out.batch == Batch(samples=["Ann has three apples.", "Bo buys two pears."])
    name, schema = output_schema(Write) or ("", {})
    expected = {
        "json_schema": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
        "json_object_schema": {"type": "json_object", "schema": schema},
        "json_object": {"type": "json_object"},
        "prompt": "absent",
    }[dialect]
    assert sent_format(capture) == expected
    if dialect != "prompt" and dialect != "json_object":
        batch = schema["$defs"]["Batch"]["properties"]["samples"]
        assert (batch["minItems"], batch["maxItems"], schema["additionalProperties"]) == (2, 2, False)


def test_json_schema_is_exactly_what_dspy_sends_a_schema_capable_model() -> None:
    with CaptureServer(GOOD) as known, CaptureServer(GOOD) as unknown:
        predict("openai/gpt-4o-mini", known.base_url, None)  # litellm knows it takes schemas: DSPy's own choice
        predict(UNREGISTERED, unknown.base_url, StructuredOutputs(default="json_schema"))
        assert sent_format(known)["type"] == "json_schema"
        assert sent_format(unknown) == sent_format(known)


def test_auto_sends_json_schema_to_an_unknown_server_where_dspy_sends_json_mode(capture: CaptureServer) -> None:
    predict(UNREGISTERED, capture.base_url, None)  # no state: DSPy's behaviour, unchanged
    assert sent_format(capture) == {"type": "json_object"}
    capture.bodies.clear()
    predict(UNREGISTERED, capture.base_url, StructuredOutputs())
    assert sent_format(capture)["type"] == "json_schema"


# --- auto's fallback and explicit settings -----------------------------------------------------------------


def test_llama_cpp_like_server_refuses_json_schema_and_honours_json_object_schema() -> None:
    schema = {"type": "object", "properties": {"batch": {"type": "object", "properties": {
        "samples": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}},
        "required": ["samples"]}}, "required": ["batch"]}
    user = "[[ ## task ## ]]\nmath\n\nRespond with the JSON object (keys: `batch`) and nothing else."
    body = {"model": "fake", "messages": [{"role": "system", "content": "Write exactly 2 samples."},
                                          {"role": "user", "content": user}], "seed": 1}
    with FakeServer(FaultConfig(response_format_dialect="json_object_schema")) as server:
        url = f"{server.base_url}/chat/completions"
        refused = httpx.post(url, json={**body, "response_format": response_format("json_schema", schema)})
        honoured = httpx.post(url, json={**body, "response_format": response_format("json_object_schema", schema)})
        near = httpx.post(url, json={**body, "response_format": {"type": "json_object"}})
        formats = server.formats
    assert refused.status_code == 500 and refused.json()["error"]["message"] == LLAMA_CPP_REFUSAL
    assert "response_format" in LLAMA_CPP_REFUSAL
    answer = json.loads(honoured.json()["choices"][0]["message"]["content"])
    assert len(answer["batch"]["samples"]) == 2
    near_miss = json.loads(near.json()["choices"][0]["message"]["content"])
    assert isinstance(near_miss["batch"], str) and len(json.loads(near_miss["batch"])) == 2  # a JSON string
    assert formats == {"json_schema": 1, "json_object_schema": 1, "json_object": 1}


def test_fake_server_dialect_option() -> None:
    args = build_parser().parse_args(["--response-format-dialect", "json_object_schema"])
    assert config_from_args(args).response_format_dialect == "json_object_schema"
    assert config_from_args(build_parser().parse_args([])).response_format_dialect == "json_schema"  # default
    with pytest.raises(ConfigError, match="response_format_dialect"):
        FaultConfig(response_format_dialect="xml")  # type: ignore[arg-type]


def test_litellm_error_for_the_refusal_is_recognised() -> None:
    with FakeServer(FaultConfig(response_format_dialect="json_object_schema")) as server:
        lm = make_lm(UNREGISTERED, temperature=0.5, max_tokens=64, api_base=server.base_url, cache=False)
        with lm_context(StructuredOutputs(default="json_schema")), pytest.raises(LMServerError) as caught:
            dspy.Predict(Write)(task="math", lm=lm)
    assert caught.value.status == 500 and refuses_response_format(caught.value)
    assert not refuses_response_format(LMServerError("The server had an error (fake).", status=500))


def test_explicit_json_object_gets_the_near_miss_repaired_through_the_real_stack() -> None:
    with FakeServer(FaultConfig(response_format_dialect="json_object_schema")) as server:
        out = predict(UNREGISTERED, server.base_url, StructuredOutputs(default="json_object"))
        formats = server.formats
    assert len(out.batch.samples) == 2 and formats == {"json_object": 1}


def refusing_gateway(setting: str, sent: list[str | None]) -> tuple[Gateway, StructuredOutputs, Any]:
    """A gateway over ``openai/<m>`` whose call fails like llama-cpp-python's server unless the dialect is
    json_object_schema; ``sent`` receives the dialect of every attempt."""
    state = StructuredOutputs(default=setting)  # type: ignore[arg-type]
    lm = make_lm(UNREGISTERED, temperature=0.5, max_tokens=64, api_base="http://127.0.0.1:9/v1")
    records: list[CallRecord] = []
    gateway = Gateway(dict.fromkeys(("pivots", "leaf"), lm), concurrency=4, on_call=records.append,  # type: ignore[arg-type]
                      policy=RetryPolicy(attempts=2, base_delay=0.0, failure_limit=3), structured=state)

    async def fn(lm: Any, config: dict[str, Any]) -> str:
        dialect = state.dialect(lm)
        sent.append(dialect)
        await asyncio.sleep(0)
        if dialect == "json_schema":
            raise LMServerError(f"[{lm.model}] litellm.InternalServerError: {LLAMA_CPP_REFUSAL}", status=500)
        return "ok"

    return gateway, state, fn


def test_auto_falls_back_once_however_many_calls_see_the_refusal() -> None:
    async def scenario() -> None:
        sent: list[str | None] = []
        gateway, state, fn = refusing_gateway("auto", sent)
        results = await asyncio.gather(*(gateway.call("leaf", stage="leaf", node_id=str(i), seed=i, fn=fn)
                                         for i in range(6)))
        assert results == ["ok"] * 6
        # the four calls in flight (the concurrency) were refused and each retried once; the two that
        # started later sent json_object_schema at once; the model moved one step, not four
        assert sent.count("json_schema") == 4 and sent.count("json_object_schema") == 6
        assert state.chosen() == {UNREGISTERED: "json_object_schema"}
        assert await gateway.call("leaf", stage="leaf", node_id="later", seed=9, fn=fn) == "ok"
        assert sent[-1] == "json_object_schema" and len(sent) == 11

    asyncio.run(scenario())


@pytest.mark.parametrize("setting", ["json_schema", "json_object", "prompt"])
def test_an_explicit_setting_never_falls_back(setting: str) -> None:
    async def scenario() -> None:
        sent: list[str | None] = []
        gateway, state, fn = refusing_gateway(setting, sent)
        result = await gateway.call("leaf", stage="leaf", node_id="a", seed=1, fn=fn)
        assert state.chosen() == {UNREGISTERED: setting} and set(sent) == {setting}
        assert result == (None if setting == "json_schema" else "ok")
        assert len(sent) == (2 if setting == "json_schema" else 1)  # ordinary retries only

    asyncio.run(scenario())


def test_auto_run_from_the_cli_against_a_llama_cpp_like_server(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with FakeServer(FaultConfig(response_format_dialect="json_object_schema")) as server:
        done = treesynth("run", TASK, "--model", "openai/fake", "--api-base", server.base_url, "-n", "12",
                         "--depth", "2", "--width", "3", "--pivots", "3", "--concurrency", "4", "-q",
                         "--out", str(out), env=cli_env(tmp_path))
        formats, counts = server.formats, server.counts
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["config"]["model"]["structured_output"] == "auto"
    # the first request was refused as json_schema and retried at once; every later one sent json_object_schema
    # (a module may make more than one LM request per ledger call, so requests >= calls)
    assert set(formats) == {"json_schema", "json_object_schema"} and formats["json_schema"] == 1
    assert formats["json_object_schema"] == counts["ok"] >= run["llm"]["calls"]
    assert counts["500"] == 1 and run["llm"]["retries"] == 1
    assert all(stage["failed"] == stage["parse_failures"] for stage in run["llm"]["by_stage"])  # no provider error


def test_explicit_json_schema_from_the_cli_never_falls_back(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  attempts: 2\n  structured_output: json_schema\n")
    out = tmp_path / "run"
    with FakeServer(FaultConfig(response_format_dialect="json_object_schema")) as server:
        done = treesynth("run", TASK, "--config", str(config), "--model", "openai/fake", "--api-base",
                         server.base_url, "-n", "12", "-q", "--out", str(out), env=cli_env(tmp_path))
        formats = server.formats
    assert done.returncode == 1
    assert formats == {"json_schema": 2}  # two ordinary attempts, no other dialect ever tried
    error = [line for line in done.stderr.strip().splitlines() if not line.startswith("warning: ")]  # run start
    assert len(error) == 1 and "refused structured output as json_schema" in error[0]
    assert "--structured-output" in error[0] and "json_object_schema" in error[0]
    assert json.loads((out / "run.json").read_text())["status"] != "complete"


def test_bad_structured_output_option_is_a_usage_error(tmp_path: Path) -> None:
    done = treesynth("run", TASK, "--model", "test/fake", "--structured-output", "xml", "-q", "--out",
                     str(tmp_path / "o"))
    assert done.returncode == 2 and "model.structured_output" in done.stderr


# --- tolerant parsing ---------------------------------------------------------------------------------------

GROUPS = [{"value": "s", "members": [1]}, {"value": "l", "members": [2]}]
NEAR_MISSES = {  # case: (signature, answer, whether DSPy alone already accepts it)
    "wrapper as a bare list": (Write, {"batch": ["a b", "c d"]}, False),
    "wrapper as a JSON string of the list": (Write, {"batch": json.dumps(["a b", "c d"])}, False),
    "wrapper as a JSON string of the object": (Write, {"batch": json.dumps({"samples": ["a b", "c d"]})}, True),
    "whole answer a bare list": (Write, ["a b", "c d"], False),
    "whole answer a fenced bare list": (Write, "```json\n[\"a b\", \"c d\"]\n```", False),
    "whole answer a JSON string of the object": (Write, json.dumps(json.dumps({"batch": ["a b", "c d"]})), False),
    "object as a JSON string": (Divide, {"split": json.dumps({"criterion": "size", "groups": GROUPS})}, True),
    "nested list as a JSON string": (Divide, {"split": {"criterion": "size", "groups": json.dumps(GROUPS)}}, False),
    "wrapper list inside a JSON string of the object": (Divide, {"split": json.dumps(
        {"criterion": "size", "groups": json.dumps(GROUPS)})}, False),
}


@pytest.mark.parametrize("case", NEAR_MISSES)
def test_near_misses_are_repaired(case: str) -> None:
    signature, answer, dspy_accepts = NEAR_MISSES[case]
    completion = answer if isinstance(answer, str) else json.dumps(answer)
    if not dspy_accepts:
        with pytest.raises(AdapterParseError):
            dspy.JSONAdapter().parse(signature, completion)  # DSPy alone rejects it
    parsed = MemoJSONAdapter().parse(signature, completion)
    if signature is Write:
        assert parsed == {"batch": Batch(samples=["a b", "c d"])}
    else:
        assert parsed["split"].criterion == "size" and [g.value for g in parsed["split"].groups] == ["s", "l"]


GARBAGE = {
    "prose": (Write, "hello"),
    "wrong type": (Write, json.dumps({"batch": 5})),
    "wrong type inside": (Write, json.dumps({"batch": {"samples": 5}})),
    "too many": (Write, json.dumps(["a", "b", "c"])),
    "too few": (Write, json.dumps({"batch": ["a"]})),
    "too few as a string": (Write, json.dumps({"batch": json.dumps(["a"])})),
    "missing field": (WriteWithNote, json.dumps({"batch": ["a", "b"]})),
    "bare list for two fields": (WriteWithNote, json.dumps(["a", "b"])),
    "wrong key": (Write, json.dumps({"items": ["a", "b"]})),
    "split with one group": (Divide, json.dumps({"split": json.dumps({"criterion": "x", "groups": [
        {"value": "s", "members": [1]}]})})),
}


@pytest.mark.parametrize("case", GARBAGE)
def test_garbage_still_fails_with_the_original_error(case: str) -> None:
    signature, completion = GARBAGE[case]
    with pytest.raises(AdapterParseError) as plain:
        dspy.JSONAdapter().parse(signature, completion)
    with pytest.raises(AdapterParseError) as memo:
        MemoJSONAdapter().parse(signature, completion)
    assert str(memo.value).replace("MemoJSONAdapter", "JSONAdapter") == str(plain.value)


def test_wrapper_detection_does_not_depend_on_the_inner_name() -> None:
    class Items(BaseModel):
        items: list[str]

    class Two(BaseModel):
        items: list[str]
        label: str

    class Scalar(BaseModel):
        value: str

    assert (wrapper_field(Items), wrapper_field(Batch), wrapper_field(Two), wrapper_field(Scalar)) == (
        "items", "samples", None, None)
    assert repair_output({"pivots": Items}, {"pivots": ["a"]}) == {"pivots": {"items": ["a"]}}
    assert repair_output({"pivots": Items}, {"pivots": {"items": ["a"]}}) is None  # in shape: nothing to repair
    assert repair_output({"note": str}, {"note": "[1, 2]"}) is None  # a string where a string is expected stays


# --- a model that never parses stops the run ----------------------------------------------------------------


def test_parse_stop_is_disarmed_by_one_success() -> None:
    async def scenario() -> None:
        records: list[CallRecord] = []
        lm = make_lm("test/fake", temperature=0.5, max_tokens=64)
        gateway = Gateway({"leaf": lm}, concurrency=1, on_call=records.append,  # type: ignore[dict-item]
                          policy=RetryPolicy(parse_limit=3))

        async def bad(lm: Any, config: dict[str, Any]) -> str:
            raise AdapterParseError(adapter_name="JSONAdapter", signature=Write, lm_response="x")

        async def good(lm: Any, config: dict[str, Any]) -> str:
            return "ok"

        for i in range(2):
            assert await gateway.call("leaf", stage="leaf", node_id=str(i), seed=i, fn=bad) is None
        with pytest.raises(ProviderError, match="every one of the first 3 calls to test/fake failed to parse"):
            await gateway.call("leaf", stage="leaf", node_id="2", seed=2, fn=bad)
        assert len(records) == 3  # the call that stopped the run is in the ledger

        armed = Gateway({"leaf": lm}, concurrency=1, on_call=records.append,  # type: ignore[dict-item]
                        policy=RetryPolicy(parse_limit=3))
        assert await armed.call("leaf", stage="leaf", node_id="ok", seed=0, fn=good) == "ok"
        for i in range(5):  # after one success parse failures never stop the run
            assert await armed.call("leaf", stage="leaf", node_id=str(i), seed=i, fn=bad) is None

    asyncio.run(scenario())


def test_a_server_that_never_parses_stops_the_run_after_six_calls(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with CaptureServer("I am sorry, I cannot help with that.") as server:
        done = treesynth("run", TASK, "--model", UNREGISTERED, "--api-base", server.base_url, "-n", "12",
                         "--concurrency", "1", "-q", "--out", str(out), env=cli_env(tmp_path))
        bodies = list(server.bodies)
    assert done.returncode == 1, done.stderr
    error = [line for line in done.stderr.strip().splitlines() if not line.startswith("warning: ")]  # run start
    assert len(error) == 1, done.stderr
    assert error[0] == (f"error: every one of the first 6 calls to {UNREGISTERED} failed to parse its structured "
                        "output (sent as json_schema); set model.structured_output (or --structured-output) to "
                        "json_object_schema, json_object or prompt, then re-run the same command to resume")
    assert len(bodies) == 6
    run = json.loads((out / "run.json").read_text())
    assert run["status"] != "complete" and run["llm"]["calls"] == 6
    assert all(stage["parse_failures"] == stage["calls"] for stage in run["llm"]["by_stage"])
