"""A fake OpenAI-compatible HTTP server on loopback, answering with the fake model and injecting faults.

It serves ``POST /v1/chat/completions`` (``/chat/completions`` too), ``GET /v1/models`` and ``GET /health``
over HTTP/1.1 with keep-alive, on stdlib :mod:`asyncio` streams. Chat completions are answered by
:func:`treesynth.testing.fake_lm.fake_answer`, so DSPy's ``JSONAdapter`` gets schema-valid JSON, through
the real client stack (litellm, the OpenAI SDK, httpx/aiohttp).

Faults are decided per chat-completion request by :func:`decide` from the seed and the request's
arrival number, so a run with the same seed and the same request order sees the same faults:

* ``429`` -- rate limited, with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` headers;
* ``500`` -- an internal server error;
* ``hang`` -- the answer is held back ``hang_seconds``, so clients must time out;
* ``malformed`` -- HTTP 200 whose body is truncated, i.e. not valid JSON.

Servers disagree on structured output. By default the server takes OpenAI's ``{"type": "json_schema",
"json_schema": {...}}`` (vLLM, llama-server, ...). With ``response_format_dialect="json_object_schema"``
(``--response-format-dialect json_object_schema``) it behaves like llama-cpp-python's server: a request
with ``type: json_schema`` gets HTTP 500 naming ``response_format`` (llama-cpp-python's own message),
``{"type": "json_object", "schema": {...}}`` is honoured, and bare ``json_object`` (or no
``response_format``) gets the near-miss a real model gives without a schema: each output field named by
the prompt holds a JSON *string* of a list (:func:`near_miss_answer`). :attr:`FakeServer.formats` counts
requests by the kind of ``response_format`` received (:func:`format_kind`).

Every response except a hang waits ``latency_ms`` plus a uniform jitter in ``[-jitter_ms, +jitter_ms]``
(clamped at 0) with :func:`asyncio.sleep`, so the mean latency is ``latency_ms``.

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

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

from treesynth.errors import ConfigError
from treesynth.testing.fake_lm import fake_answer

logger = logging.getLogger("treesynth.testing.fake_server")  # stable name also under `python -m`

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODEL_PATHS = frozenset({"/v1/models", "/models"})
_JSON = "application/json"
RESPONSE_FORMAT_DIALECTS = ("json_schema", "json_object_schema")
"""The structured-output dialects the fake server can take (:attr:`FaultConfig.response_format_dialect`)."""
LLAMA_CPP_REFUSAL = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                     "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
                     "'ctx': {'expected': \"'text' or 'json_object'\"}}")
"""llama-cpp-python's server's answer (HTTP 500, ``internal_server_error``) to ``type: json_schema``."""


class Outcome(StrEnum):
    """How the server answered one chat-completion request (the keys of :attr:`FakeServer.counts`)."""

    OK = "ok"
    RATE_LIMITED = "429"
    SERVER_ERROR = "500"
    HANG = "hang"
    MALFORMED = "malformed"
    INVALID = "invalid"
    """The request itself was bad (HTTP 400); no fault was drawn for it."""
    ERROR = "error"
    """The fake model failed on the request (HTTP 500, logged); a bug, not an injected fault."""


@dataclass(frozen=True)
class FaultConfig:
    """Latency and fault rates of a fake server.

    The four rates are probabilities of disjoint outcomes, so each lies in ``[0, 1]`` and their sum is at
    most 1; the remaining probability is a normal answer.

    Attributes:
        latency_ms: Mean latency added to every response except a hang.
        jitter_ms: Half-width of the uniform jitter around ``latency_ms``.
        rate_429: Probability of a 429 answer.
        retry_after: Seconds announced in the 429's ``Retry-After`` header.
        rate_500: Probability of a 500 answer.
        rate_hang: Probability of holding the answer back ``hang_seconds``.
        hang_seconds: How long a hung request waits before it is answered.
        rate_malformed: Probability of an HTTP 200 whose body is not valid JSON.
        seed: Seed of the fault draws.
        response_format_dialect: The structured-output dialect the server takes: ``json_schema`` (OpenAI's,
            the default) or ``json_object_schema`` (llama-cpp-python's; see the module docstring).
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    hang_seconds: float = 30.0
    rate_malformed: float = 0.0
    seed: int = 0
    response_format_dialect: Literal["json_schema", "json_object_schema"] = "json_schema"

    def __post_init__(self) -> None:
        """Reject negative durations, rates outside ``[0, 1]`` or summing above 1, and unknown dialects."""
        if self.response_format_dialect not in RESPONSE_FORMAT_DIALECTS:
            raise ConfigError(f"fake server: response_format_dialect must be one of "
                              f"{', '.join(RESPONSE_FORMAT_DIALECTS)}, got {self.response_format_dialect!r}")
        for name in ("latency_ms", "jitter_ms", "retry_after", "hang_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"fake server: {name} must be a finite number >= 0, got {value!r}")
        rates = self.rates()
        for name, rate in zip(("rate_429", "rate_500", "rate_hang", "rate_malformed"), rates, strict=True):
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"fake server: {name} must lie in [0, 1], got {rate!r}")
        if sum(rates) > 1.0 + 1e-9:
            raise ConfigError(f"fake server: the fault rates sum to {sum(rates):g}; lower them to sum to at most 1")

    def rates(self) -> tuple[float, float, float, float]:
        """The fault probabilities in draw order: 429, 500, hang, malformed."""
        return (self.rate_429, self.rate_500, self.rate_hang, self.rate_malformed)


class Decision(NamedTuple):
    """The fault drawn for one request and how long to wait before responding."""

    outcome: Outcome
    delay: float


_DRAW_ORDER = (Outcome.RATE_LIMITED, Outcome.SERVER_ERROR, Outcome.HANG, Outcome.MALFORMED)


def _uniforms(seed: int, index: int) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) derived from ``(seed, index)`` alone (fast and process-stable)."""
    digest = hashlib.blake2b(f"fake-server:{seed}:{index}".encode(), digest_size=16).digest()
    scale = 2.0**-53
    return (int.from_bytes(digest[:8], "big") >> 11) * scale, (int.from_bytes(digest[8:], "big") >> 11) * scale


def decide(config: FaultConfig, index: int) -> Decision:
    """The outcome and delay (seconds) of chat-completion request number ``index`` (0-based) under ``config``.

    A pure function of ``(config.seed, index)`` and the rates, which makes a run reproducible.
    """
    draw, spread = _uniforms(config.seed, index)
    outcome = Outcome.OK
    threshold = 0.0
    for candidate, rate in zip(_DRAW_ORDER, config.rates(), strict=True):
        threshold += rate
        if draw < threshold:
            outcome = candidate
            break
    if outcome is Outcome.HANG:
        return Decision(outcome, config.hang_seconds)
    jitter = (2.0 * spread - 1.0) * config.jitter_ms
    return Decision(outcome, max(0.0, config.latency_ms + jitter) / 1000.0)


class ServerStats:
    """Thread-safe counts of chat-completion requests by :class:`Outcome` and by response-format kind."""

    def __init__(self) -> None:
        """Start with every outcome at zero."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((o.value for o in Outcome), 0)
        self._formats: dict[str, int] = {}

    def record(self, outcome: Outcome) -> None:
        """Count one request."""
        with self._lock:
            self._counts[outcome.value] += 1

    def record_format(self, kind: str) -> None:
        """Count one well-formed chat request by the kind of its ``response_format`` (:func:`format_kind`)."""
        with self._lock:
            self._formats[kind] = self._formats.get(kind, 0) + 1

    def formats(self) -> dict[str, int]:
        """A copy of the counts by response-format kind (only kinds seen)."""
        with self._lock:
            return dict(self._formats)

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts, keyed by outcome value (``ok``, ``429``, ``500``, ``hang``, ...)."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """How many chat-completion requests were received."""
        with self._lock:
            return sum(self._counts.values())


class _HttpError(Exception):
    """A framing error: answer with ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ClientError(Exception):
    """A well-framed chat request whose body is invalid (HTTP 400)."""


@dataclass
class _Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


@dataclass
class _Reply:
    status: int
    body: bytes
    delay: float = 0.0
    headers: list[tuple[str, str]] = field(default_factory=list)


class ChatCall(NamedTuple):
    """What the fake model needs from a chat-completions request."""

    model: str
    prompt: str
    schema: dict[str, Any] | None
    seed: int | None
    chars: int
    system: str = ""
    response_format: Any = None
    """The request's ``response_format``, as sent."""


def _error_body(message: str, kind: str, code: str | None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def _text_of(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise _ClientError("response_format.json_schema.schema must be a JSON object")
    return schema


def format_kind(response_format: Any) -> str:
    """The dialect of a request's ``response_format``: ``json_schema``, ``json_object_schema`` (JSON mode with a
    ``schema``), ``json_object``, ``none`` (absent) or ``other``."""
    if response_format is None:
        return "none"
    if not isinstance(response_format, dict):
        return "other"
    kind = response_format.get("type")
    if kind == "json_object":
        return "json_object_schema" if isinstance(response_format.get("schema"), dict) else "json_object"
    return "json_schema" if kind == "json_schema" else "other"


_OUTPUT_KEYS = re.compile(r"Respond with[^\n]*")
_COUNT = re.compile(r"exactly (\d+)|\"minItems\":\s*(\d+)")


def near_miss_answer(call: ChatCall) -> str:
    """What a real model tends to answer a prompt without a schema: every output field named in the prompt's
    closing ``Respond with ...`` line holds a JSON *string* of a list of samples (as many as the system text
    asks for ``exactly``, else 3), e.g. ``{"pivots": "[\\"A student ...\\", ...]"}``."""
    closing = _OUTPUT_KEYS.findall(call.prompt)
    keys = re.findall(r"`(\w+)`", closing[-1]) if closing else []
    counted = _COUNT.search(call.system)
    count = int(next(g for g in counted.groups() if g)) if counted else 3
    rng = random.Random(f"{call.prompt}|{call.seed}")
    words = ("apple", "train", "river", "coin", "garden", "ticket", "bakery", "rocket", "meadow", "harbor")

    def sample() -> str:
        return " ".join(rng.choice(words) for _ in range(8)).capitalize() + f" #{rng.randrange(10**6)}."

    return json.dumps({key: json.dumps([sample() for _ in range(count)]) for key in keys or ["answer"]})


def parse_chat_call(body: bytes) -> ChatCall:
    """Validate an OpenAI chat-completions body and extract what the fake model needs."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _ClientError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise _ClientError("the request body must be a JSON object")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _ClientError("'messages' must be a non-empty list of message objects")
    if payload.get("stream"):
        raise _ClientError("streaming is not supported by the fake server; send stream=false")
    seed = payload.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise _ClientError("'seed' must be an integer")
    texts = [(str(m.get("role", "")), _text_of(m.get("content"))) for m in messages]
    prompt = "\n".join(text for role, text in texts if role not in ("system", "developer"))
    system = "\n".join(text for role, text in texts if role in ("system", "developer"))
    chars = sum(len(text) for _, text in texts)
    response_format = payload.get("response_format")
    return ChatCall(str(payload.get("model") or "fake"), prompt, _schema_of(response_format), seed, chars, system,
                    response_format)


def completion_body(call: ChatCall, content: str, index: int) -> bytes:
    """A ``chat.completion`` JSON body answering ``call`` with ``content``."""
    prompt_tokens = max(1, call.chars // 4)
    completion_tokens = max(1, len(content) // 4)
    return json.dumps({
        "id": f"chatcmpl-fake-{index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }).encode()


def _encode_response(reply: _Reply, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(reply.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Type: {_JSON}", f"Content-Length: {len(reply.body)}",
             f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


def _parse_head(head: bytes) -> _Request:
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    path = parts[1].split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    return _Request(parts[0].upper(), path, parts[2], headers)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _HttpError(400, "malformed chunk size") from exc
        if size == 0:
            while (await reader.readline()).strip():  # trailers
                pass
            return bytes(body)
        if len(body) + size > MAX_BODY_BYTES:
            raise _HttpError(413, "request body too large")
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def _read_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> bytes:
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise _HttpError(400, "malformed Content-Length") from exc
    if length < 0:
        raise _HttpError(400, "negative Content-Length")
    if length > MAX_BODY_BYTES:
        raise _HttpError(413, "request body too large")
    return await reader.readexactly(length) if length else b""


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
    """The next request on a connection, or None when the peer closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise _HttpError(431, "request headers too large") from exc
    request = _parse_head(head)
    request.body = await _read_body(reader, writer, request.headers)
    return request


class AsyncFakeServer:
    """The fake OpenAI-compatible server on the running event loop (``async with AsyncFakeServer() as s``).

    Attributes:
        config: Latency and fault rates.
        stats: Thread-safe counts of chat-completion requests by outcome.
    """

    def __init__(self, config: FaultConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 log_interval: float = 10.0) -> None:
        """Prepare a server on ``host:port`` (port 0 picks a free port); :meth:`start` binds it.

        ``log_interval`` is how often (seconds) the request counts are logged at INFO while they change.
        """
        self.config = config or FaultConfig()
        self.stats = ServerStats()
        self._host = host
        self._port = port
        self._log_interval = log_interval
        self._next_index = 0
        self._server: asyncio.Server | None = None
        self._bound_port: int | None = None
        self._closed = False
        self._connections: set[asyncio.Task[None]] = set()
        self._reporter: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._bound_port is None:
            raise RuntimeError("the fake server is not started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give clients, ``http://HOST:PORT/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._server is not None:
            raise RuntimeError("the fake server is already started")
        self._server = await asyncio.start_server(self._handle_connection, self._host, self._port, backlog=2048,
                                                  limit=MAX_HEADER_BYTES)
        self._bound_port = int(self._server.sockets[0].getsockname()[1])
        self._reporter = asyncio.create_task(self._report_periodically())
        logger.info("fake OpenAI server listening on %s (%s)", self.base_url, self.config)

    async def close(self) -> None:
        """Stop accepting, drop open connections (cancelling hung answers) and log the final counts."""
        if self._server is None or self._closed:
            return
        self._closed = True
        self._server.close()
        tasks = [*self._connections, *([self._reporter] if self._reporter else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        logger.info("fake OpenAI server stopped after %d requests: %s", self.stats.total, self.stats.snapshot())

    async def __aenter__(self) -> Self:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Close the server."""
        await self.close()

    async def _report_periodically(self) -> None:
        last = -1
        while True:
            await asyncio.sleep(self._log_interval)
            total = self.stats.total
            if total != last:
                logger.info("fake OpenAI server: %d requests: %s", total, self.stats.snapshot())
                last = total

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request or mid-answer (e.g. it timed out on a hang)
        except asyncio.CancelledError:
            # close() cancels open connections; ending normally keeps asyncio's stream callback from
            # logging the cancellation as an error (it calls task.exception() on Python 3.11).
            pass
        except Exception:
            logger.exception("fake server: a connection failed")
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                request = await _read_request(reader, writer)
            except _HttpError as exc:
                reply = _Reply(exc.status, _error_body(str(exc), "invalid_request_error", None))
                writer.write(_encode_response(reply, keep_alive=False))
                await writer.drain()
                return
            if request is None:
                return
            reply = self._dispatch(request)
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            keep_alive = request.keep_alive()
            writer.write(_encode_response(reply, keep_alive))
            await writer.drain()
            if not keep_alive:
                return

    def _dispatch(self, request: _Request) -> _Reply:
        if request.path in CHAT_PATHS:
            if request.method != "POST":
                return _Reply(405, _error_body("use POST", "invalid_request_error", None), headers=[("Allow", "POST")])
            return self._chat(request.body)
        if request.method != "GET":
            return _Reply(405, _error_body("use GET", "invalid_request_error", None), headers=[("Allow", "GET")])
        if request.path in MODEL_PATHS:
            model = {"id": "fake", "object": "model", "created": 0, "owned_by": "treesynth"}
            return _Reply(200, json.dumps({"object": "list", "data": [model]}).encode())
        if request.path == "/health":
            return _Reply(200, json.dumps({"status": "ok", "requests": self.stats.total}).encode())
        return _Reply(404, _error_body(f"no route {request.path}", "invalid_request_error", "not_found"))

    def _chat(self, body: bytes) -> _Reply:
        try:
            call = parse_chat_call(body)
        except _ClientError as exc:
            self.stats.record(Outcome.INVALID)
            return _Reply(400, _error_body(str(exc), "invalid_request_error", None))
        kind = format_kind(call.response_format)
        self.stats.record_format(kind)
        llama_cpp = self.config.response_format_dialect == "json_object_schema"
        if llama_cpp and kind == "json_schema":  # refused before any fault is drawn, as validation is
            self.stats.record(Outcome.SERVER_ERROR)
            return _Reply(500, _error_body(LLAMA_CPP_REFUSAL, "internal_server_error", None))
        index = self._next_index
        self._next_index += 1
        outcome, delay = decide(self.config, index)
        if outcome is Outcome.RATE_LIMITED:
            self.stats.record(outcome)
            wait = self.config.retry_after
            headers = [("Retry-After", str(math.ceil(wait))), ("retry-after-ms", str(round(wait * 1000)))]
            message = f"Rate limit reached (fake). Please try again in {wait:g}s."
            return _Reply(429, _error_body(message, "rate_limit_error", "rate_limit_exceeded"), delay, headers)
        if outcome is Outcome.SERVER_ERROR:
            self.stats.record(outcome)
            return _Reply(500, _error_body("The server had an error (fake).", "server_error", None), delay)
        try:
            if not llama_cpp:
                content = fake_answer(call.prompt, call.schema, call.seed)
            elif kind == "json_object_schema":  # llama-cpp-python turns the schema into a grammar
                content = fake_answer(call.prompt, call.response_format["schema"], call.seed)
            else:
                content = near_miss_answer(call)
        except Exception as exc:
            logger.exception("the fake model failed on request %d", index)
            self.stats.record(Outcome.ERROR)
            return _Reply(500, _error_body(f"fake model failure: {exc!r}", "fake_model_error", None), delay)
        self.stats.record(outcome)
        answer = completion_body(call, content, index)
        if outcome is Outcome.MALFORMED:
            answer = answer[: len(answer) // 2]
        return _Reply(200, answer, delay)


class FakeServer:
    """:class:`AsyncFakeServer` running in a background thread with its own event loop.

    Use it as a context manager: ``with FakeServer(FaultConfig(rate_429=0.1)) as server: server.base_url``.
    """

    def __init__(self, config: FaultConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 log_interval: float = 10.0, start_timeout: float = 10.0) -> None:
        """Prepare a server; :meth:`start` (or entering the context) runs it."""
        self.server = AsyncFakeServer(config, host=host, port=port, log_interval=log_interval)
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def config(self) -> FaultConfig:
        """Latency and fault rates."""
        return self.server.config

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give clients, ``http://127.0.0.1:PORT/v1``."""
        return self.server.base_url

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    @property
    def counts(self) -> dict[str, int]:
        """Chat-completion requests by outcome: ``ok``, ``429``, ``500``, ``hang``, ``malformed`` (and
        ``invalid`` for HTTP 400s, ``error`` for fake-model failures)."""
        return self.server.stats.snapshot()

    @property
    def formats(self) -> dict[str, int]:
        """Well-formed chat-completion requests by response-format kind (:func:`format_kind`): ``json_schema``,
        ``json_object_schema``, ``json_object``, ``none``, ``other``; only kinds seen."""
        return self.server.stats.formats()

    @property
    def requests_total(self) -> int:
        """How many chat-completion requests were received."""
        return self.server.stats.total

    def start(self) -> Self:
        """Start the background thread and wait until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the fake server is already started")
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), name="fake-openai-server",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise RuntimeError(f"the fake server did not start within {self._start_timeout:g}s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (cancelling hung answers) and join its thread."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the fake server thread did not stop within %gs", timeout)

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop the server."""
        self.stop()

    async def _run(self) -> None:
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m treesynth.testing.fake_server``."""
    parser = argparse.ArgumentParser(prog="python -m treesynth.testing.fake_server",
                                     description="Fake OpenAI-compatible server answering with treesynth's fake "
                                                 "model, with seeded latency and fault injection.")
    defaults = FaultConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms, help="mean latency per response")
    parser.add_argument("--jitter-ms", type=float, default=defaults.jitter_ms,
                        help="uniform jitter in [-j, +j] around the latency")
    parser.add_argument("--rate-429", type=float, default=defaults.rate_429, help="probability of a 429")
    parser.add_argument("--retry-after", type=float, default=defaults.retry_after,
                        help="seconds announced in a 429's Retry-After header")
    parser.add_argument("--rate-500", type=float, default=defaults.rate_500, help="probability of a 500")
    parser.add_argument("--rate-hang", type=float, default=defaults.rate_hang,
                        help="probability of holding the answer back --hang-seconds")
    parser.add_argument("--hang-seconds", type=float, default=defaults.hang_seconds, help="length of a hang")
    parser.add_argument("--rate-malformed", type=float, default=defaults.rate_malformed,
                        help="probability of an HTTP 200 whose body is not valid JSON")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the fault draws")
    parser.add_argument("--response-format-dialect", choices=RESPONSE_FORMAT_DIALECTS,
                        default=defaults.response_format_dialect,
                        help="structured output the server takes: json_schema (OpenAI's; default) or "
                             "json_object_schema (llama-cpp-python's: json_schema gets HTTP 500)")
    parser.add_argument("--log-interval", type=float, default=10.0, help="seconds between request-count logs")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def config_from_args(args: argparse.Namespace) -> FaultConfig:
    """The :class:`FaultConfig` described by parsed command-line ``args``."""
    return FaultConfig(latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, rate_429=args.rate_429,
                       retry_after=args.retry_after, rate_500=args.rate_500, rate_hang=args.rate_hang,
                       hang_seconds=args.hang_seconds, rate_malformed=args.rate_malformed, seed=args.seed,
                       response_format_dialect=args.response_format_dialect)


async def serve(config: FaultConfig, *, host: str = "127.0.0.1", port: int = 0, log_interval: float = 10.0,
                stop_signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Serve until one of ``stop_signals`` arrives, after printing ``listening on BASE_URL``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, stop.set)
    async with AsyncFakeServer(config, host=host, port=port, log_interval=log_interval) as server:
        print(f"listening on {server.base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m treesynth.testing.fake_server``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config, host=args.host, port=args.port, log_interval=args.log_interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
