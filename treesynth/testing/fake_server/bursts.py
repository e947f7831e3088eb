"""What the fake server answers inside a burst (:attr:`FaultConfig.burst`): error statuses, broken transport
and schema-valid but wrong content.

Status bursts are whole replies; transport bursts are a normal reply marked with how :mod:`.app` must break
its delivery (:attr:`Reply.transport`); content bursts rewrite the fake model's JSON answer.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable
from typing import Any

from treesynth.testing.fake_lm import parse_inputs
from treesynth.testing.fake_server.faults import FaultConfig

STATUS_MESSAGES = {
    "429": (429, "Rate limit reached (fake). Please try again later.", "rate_limit_error", "rate_limit_exceeded"),
    "500": (500, "The server had an error (fake).", "server_error", None),
    "502": (502, "Bad gateway (fake).", "server_error", None),
    "503": (503, "The service is temporarily unavailable (fake).", "server_error", None),
    "529": (529, "Overloaded (fake).", "overloaded_error", None),
}
"""Status, message, error type and code of each status burst."""


def retry_after_headers(config: FaultConfig, now: Callable[[], float] = time.time) -> tuple[tuple[str, str], ...]:
    """The 429 headers announcing ``config.retry_after`` seconds: ``Retry-After`` as whole seconds (rounded
    up) or as an HTTP-date (``now`` plus the wait, rounded up to the next second), and ``retry-after-ms``."""
    wait = config.retry_after
    if config.retry_after_form == "date":
        value = email.utils.formatdate(math.ceil(now() + wait), usegmt=True)
    else:
        value = str(math.ceil(wait))
    return (("Retry-After", value), ("retry-after-ms", str(round(wait * 1000))))


def _lists(value: Any, change: Callable[[list[Any]], list[Any]]) -> Any:
    """``value`` with every list in it (at any depth, innermost first) replaced by ``change(list)``."""
    if isinstance(value, dict):
        return {key: _lists(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return change([_lists(item, change) for item in value])
    return value


def _out_of_range(value: Any) -> Any:
    """Every number pushed out of range (+1000) and every ``labels`` list one entry too long."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value + 1000
    if isinstance(value, dict):
        out = {key: _out_of_range(item) for key, item in value.items()}
        if isinstance(out.get("labels"), list) and out["labels"]:
            out["labels"] = [*out["labels"], out["labels"][-1]]
        return out
    if isinstance(value, list):
        return [_out_of_range(item) for item in value]
    return value


def _ancestor(answer: Any, inputs: dict[str, Any]) -> Any:
    """A proposal whose criterion is the first ancestor criterion the prompt names (when it names one)."""
    ancestors = [str(c) for c in inputs.get("excluded_criteria", []) or []]
    if ancestors and isinstance(answer, dict) and isinstance(answer.get("proposal"), dict):
        answer = {**answer, "proposal": {**answer["proposal"], "criterion": ancestors[0]}}
    return answer


def _echo(answer: Any, prompt: str) -> Any:
    """Every string in a list replaced by the prompt itself."""
    return _lists(answer, lambda items: [prompt if isinstance(item, str) else item for item in items])


def wrong_content(kind: str, content: str, prompt: str) -> str:
    """The fake model's JSON ``content`` rewritten by content burst ``kind``; ``prompt`` is the request's text."""
    if kind == "invalid_json":
        return "Sure! Here is the JSON you asked for: {" + content[: len(content) // 3]
    answer = json.loads(content)
    if kind == "empty":
        answer = _lists(answer, lambda items: [])
    elif kind == "duplicates":
        answer = _lists(answer, lambda items: [items[0]] * len(items) if items else items)
    elif kind == "out_of_range":
        answer = _out_of_range(answer)
    elif kind == "ancestor":
        answer = _ancestor(answer, parse_inputs(prompt))
    elif kind == "echo":
        answer = _echo(answer, prompt)
    else:
        raise ValueError(f"not a content burst: {kind!r}")
    return json.dumps(answer)
