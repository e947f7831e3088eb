"""A fake OpenAI-compatible HTTP server on loopback, answering with the fake model and injecting faults.

It serves ``POST /v1/chat/completions`` (``/chat/completions`` too), ``GET /v1/models`` and ``GET /health``
on :mod:`aiohttp.web` (HTTP/1.1, keep-alive). Chat completions are answered by
:func:`treesynth.testing.fake_lm.fake_answer`, so DSPy's ``JSONAdapter`` gets schema-valid JSON, through
the real client stack (litellm, the OpenAI SDK, httpx/aiohttp). The package splits into the fault model
(:mod:`.faults`), the answer to a chat body (:mod:`.chat`), the HTTP server (:mod:`.app`) and the command
line (:mod:`.cli`); everything public is importable from here.

Faults are decided per chat-completion request by :func:`decide` from the seed and the request's
arrival number, so a run with the same seed and the same request order sees the same faults:

* ``429`` -- rate limited, with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` headers;
* ``500`` -- an internal server error;
* ``hang`` -- the answer is held back ``hang_seconds``, so clients must time out;
* ``malformed`` -- HTTP 200 whose body is truncated, i.e. not valid JSON.

A burst (:attr:`FaultConfig.burst`, ``--burst KIND --burst-start I --burst-length K``) forces one fault on
requests ``I`` to ``I + K - 1`` instead (counted as ``burst``), for tests that need a fault at a known moment
(:mod:`.bursts`): statuses ``429`` (``Retry-After`` as seconds or, with ``retry_after_form="date"``, as an
HTTP-date), ``500``, ``502``, ``503``, ``529``; transport faults ``hang``, ``slow`` (headers, then the body
one byte per ``hang_seconds / len(body)``), ``truncated`` (half the body, then closed), ``reset`` (half the
body, then a TCP reset), ``down`` (reset before any answer); and HTTP 200 with wrong content:
``invalid_json``, ``empty`` (every list empty), ``duplicates`` (every list one value repeated),
``out_of_range`` (numbers +1000, label lists one too long), ``ancestor`` (a proposed criterion that repeats
an ancestor's) and ``echo`` (every listed string is the prompt).

Servers disagree on structured output. By default the server takes OpenAI's ``{"type": "json_schema",
"json_schema": {...}}`` (vLLM, llama-server, ...). With ``response_format_dialect="json_object_schema"``
(``--response-format-dialect json_object_schema``) it behaves like llama-cpp-python's server: a request
with ``type: json_schema`` gets HTTP 500 naming ``response_format`` (llama-cpp-python's own message),
``{"type": "json_object", "schema": {...}}`` is honoured, and bare ``json_object`` (or no
``response_format``) gets the near-miss a real model gives without a schema: each output field named by
the prompt holds a JSON *string* of a list (:func:`near_miss_answer`). :attr:`FakeServer.formats` counts
requests by the kind of ``response_format`` received (:func:`format_kind`).

Every response except a hang waits ``latency_ms`` plus a uniform jitter in ``[-jitter_ms, +jitter_ms]``
(clamped at 0), so the mean latency is ``latency_ms``. The wait is :func:`asyncio.sleep` unless a
``sleep`` function is injected (``FakeServer(config, sleep=...)``), which lets tests observe the delays.

Run it from a shell (prints ``listening on http://127.0.0.1:PORT/v1`` and serves until SIGTERM/SIGINT)::

    python -m treesynth.testing.fake_server --port 0 --latency-ms 200 --rate-429 0.1 --seed 0

or in-process, in a background thread::

    with FakeServer(FaultConfig(latency_ms=50)) as server:
        lm = dspy.LM("openai/fake", api_base=server.base_url, api_key="x", engine="litellm", cache=False)

litellm does not know model ``openai/fake``, so unless it is told the model takes JSON schemas
(``litellm.register_model({"openai/fake": {"litellm_provider": "openai", "mode": "chat",
"supports_response_schema": True}})``) DSPy's JSONAdapter sends ``{"type": "json_object"}`` without a
schema, and the fake model then answers ``{"answer": ...}`` instead of the signature's fields. treesynth's
own runs need no registration: their ``auto`` structured output sends ``json_schema`` to a model litellm
does not know behind an ``api_base`` (:mod:`treesynth.providers.structured`).
"""

from treesynth.testing.fake_server.app import (
    CHAT_PATHS,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MODEL_PATHS,
    AsyncFakeServer,
    FakeServer,
    Sleep,
    logger,
)
from treesynth.testing.fake_server.bursts import retry_after_headers, wrong_content
from treesynth.testing.fake_server.chat import (
    LLAMA_CPP_REFUSAL,
    ChatCall,
    ChatResponder,
    Reply,
    completion_body,
    format_kind,
    near_miss_answer,
    parse_chat_call,
)
from treesynth.testing.fake_server.cli import build_parser, config_from_args, main, serve
from treesynth.testing.fake_server.faults import (
    BURST_KINDS,
    CONTENT_BURSTS,
    RESPONSE_FORMAT_DIALECTS,
    RETRY_AFTER_FORMS,
    STATUS_BURSTS,
    TRANSPORT_BURSTS,
    Decision,
    FaultConfig,
    Outcome,
    ServerStats,
    decide,
)

__all__ = [
    "BURST_KINDS", "CHAT_PATHS", "CONTENT_BURSTS", "LLAMA_CPP_REFUSAL", "MAX_BODY_BYTES", "MAX_HEADER_BYTES",
    "MODEL_PATHS", "RESPONSE_FORMAT_DIALECTS", "RETRY_AFTER_FORMS", "STATUS_BURSTS", "TRANSPORT_BURSTS",
    "AsyncFakeServer", "ChatCall", "ChatResponder", "Decision", "FakeServer", "FaultConfig", "Outcome", "Reply",
    "ServerStats", "Sleep", "build_parser", "completion_body", "config_from_args", "decide", "format_kind", "logger",
    "main", "near_miss_answer", "parse_chat_call", "retry_after_headers", "serve", "wrong_content",
]
