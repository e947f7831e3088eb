"""What the fake server answers to a chat-completions body: validation, dialect checks, faults and the fake model.

Nothing here knows about HTTP transport: :meth:`ChatResponder.respond` turns a request body into a
:class:`Reply` (status, JSON body, headers and the delay to wait before sending it).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from treesynth.testing.fake_lm import fake_answer
from treesynth.testing.fake_server.bursts import STATUS_MESSAGES, retry_after_headers, wrong_content
from treesynth.testing.fake_server.faults import (
    CONTENT_BURSTS,
    TRANSPORT_BURSTS,
    FaultConfig,
    Outcome,
    ServerStats,
    decide,
)

logger = logging.getLogger("treesynth.testing.fake_server")

LLAMA_CPP_REFUSAL = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                     "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
                     "'ctx': {'expected': \"'text' or 'json_object'\"}}")
"""llama-cpp-python's server's answer (HTTP 500, ``internal_server_error``) to ``type: json_schema``."""


class BadRequestError(Exception):
    """A chat request whose body is invalid (HTTP 400)."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, JSON body, extra headers and how long (seconds) to wait before sending it."""

    status: int
    body: bytes
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    transport: str = ""
    """How delivery breaks (a transport burst: ``slow``, ``truncated``, ``reset``, ``down``); ``""``: it does not."""


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


def error_body(message: str, kind: str, code: str | None = None) -> bytes:
    """An OpenAI-style ``{"error": {...}}`` JSON body."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def error_reply(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A :class:`Reply` carrying :func:`error_body`, sent at once."""
    return Reply(status, error_body(message, kind, code), headers=headers)


def _text_of(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema of an OpenAI ``json_schema`` response format, else None."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise BadRequestError("response_format.json_schema.schema must be a JSON object")
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
_WORDS = ("apple", "train", "river", "coin", "garden", "ticket", "bakery", "rocket", "meadow", "harbor")


def near_miss_answer(call: ChatCall) -> str:
    """What a real model tends to answer a prompt without a schema: every output field named in the prompt's
    closing ``Respond with ...`` line holds a JSON *string* of a list of samples (as many as the system text
    asks for ``exactly``, else 3), e.g. ``{"pivots": "[\\"A student ...\\", ...]"}``."""
    closing = _OUTPUT_KEYS.findall(call.prompt)
    keys = re.findall(r"`(\w+)`", closing[-1]) if closing else []
    counted = _COUNT.search(call.system)
    count = int(next(g for g in counted.groups() if g)) if counted else 3
    rng = random.Random(f"{call.prompt}|{call.seed}")

    def sample() -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(8)).capitalize() + f" #{rng.randrange(10**6)}."

    return json.dumps({key: json.dumps([sample() for _ in range(count)]) for key in keys or ["answer"]})


def parse_chat_call(body: bytes) -> ChatCall:
    """Validate an OpenAI chat-completions body and extract what the fake model needs.

    Raises:
        BadRequestError: The body is not a valid, non-streaming chat-completions request.
    """
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequestError("the request body must be a JSON object")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequestError("'messages' must be a non-empty list of message objects")
    if payload.get("stream"):
        raise BadRequestError("streaming is not supported by the fake server; send stream=false")
    seed = payload.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRequestError("'seed' must be an integer")
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


class ChatResponder:
    """Answers chat-completions bodies under a :class:`FaultConfig`, counting every request in ``stats``.

    Well-formed requests are numbered in arrival order; request ``i``'s fault and delay are
    :func:`decide` ``(config, i)``. Under the ``json_object_schema`` dialect a ``json_schema`` request is
    refused (HTTP 500, :data:`LLAMA_CPP_REFUSAL`) before any fault is drawn, as validation is.
    """

    def __init__(self, config: FaultConfig, stats: ServerStats) -> None:
        """Answer under ``config``; count in ``stats``."""
        self.config = config
        self.stats = stats
        self._next_index = 0

    def respond(self, body: bytes) -> Reply:
        """The reply to one chat-completions request body."""
        try:
            call = parse_chat_call(body)
        except BadRequestError as exc:
            self.stats.record(Outcome.INVALID)
            return error_reply(400, str(exc))
        kind = format_kind(call.response_format)
        self.stats.record_format(kind)
        llama_cpp = self.config.response_format_dialect == "json_object_schema"
        if llama_cpp and kind == "json_schema":
            self.stats.record(Outcome.SERVER_ERROR)
            return error_reply(500, LLAMA_CPP_REFUSAL, "internal_server_error")
        index = self._next_index
        self._next_index += 1
        outcome, delay = decide(self.config, index)
        burst = self.config.burst if outcome is Outcome.BURST else ""
        status = burst or {Outcome.RATE_LIMITED: "429", Outcome.SERVER_ERROR: "500"}.get(outcome, "")
        if status in STATUS_MESSAGES or burst == "hang":
            self.stats.record(outcome)
        if status in STATUS_MESSAGES:
            code, message, kind_name, error_code = STATUS_MESSAGES[status]
            headers = retry_after_headers(self.config) if code == 429 else ()
            return Reply(code, error_body(message, kind_name, error_code), delay, headers)
        if burst == "hang":
            return Reply(200, b"", self.config.hang_seconds)
        try:
            content = self._content(call, kind)
            if burst in CONTENT_BURSTS:
                content = wrong_content(burst, content, call.prompt)
        except Exception as exc:
            logger.exception("the fake model failed on request %d", index)
            self.stats.record(Outcome.ERROR)
            return Reply(500, error_body(f"fake model failure: {exc!r}", "fake_model_error"), delay)
        self.stats.record(outcome)
        answer = completion_body(call, content, index)
        if outcome is Outcome.MALFORMED:
            answer = answer[: len(answer) // 2]
        return Reply(200, answer, delay, transport=burst if burst in TRANSPORT_BURSTS else "")

    def _content(self, call: ChatCall, kind: str) -> str:
        """The fake model's message content for ``call`` under the configured dialect."""
        if self.config.response_format_dialect == "json_schema":
            return fake_answer(call.prompt, call.schema, call.seed)
        if kind == "json_object_schema":  # llama-cpp-python turns the schema into a grammar
            return fake_answer(call.prompt, call.response_format["schema"], call.seed)
        return near_miss_answer(call)
