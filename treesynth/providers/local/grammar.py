"""Structured output for the embedded engine: the JSON schema inside any ``response_format`` shape, and
a bounded cache of the llama.cpp grammars compiled from schemas."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dspy import lm15

if TYPE_CHECKING:
    from llama_cpp import LlamaGrammar

__all__ = ["GrammarCache", "schema_from_response_format"]


def schema_from_response_format(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Extract the JSON schema from any of the three ``response_format`` shapes.

    * DSPy engine: ``{"type": "json_schema", "schema": {...}, "name": ..., "strict": True}``
    * OpenAI/LiteLLM: ``{"type": "json_schema", "json_schema": {"schema": {...}, ...}}``
    * llama-cpp-python: ``{"type": "json_object", "schema": {...}}``

    ``{"type": "json_object"}`` without a schema means "any JSON object" (``{"type": "object"}``);
    ``None`` and ``{"type": "text"}`` mean unconstrained text (``None``).
    """
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind not in ("json_schema", "json_object"):
        raise lm15.UnsupportedFeatureError(
            f"response_format type {kind!r} is not supported by the embedded model",
            feature="config.response_format",
        )
    schema = response_format.get("schema")
    if schema is None and isinstance(response_format.get("json_schema"), Mapping):
        schema = response_format["json_schema"].get("schema")
    if schema is None:
        if kind == "json_schema":
            raise lm15.InvalidRequestError("response_format json_schema carries no schema")
        return {"type": "object"}
    if not isinstance(schema, Mapping):
        raise lm15.InvalidRequestError("response_format schema must be a JSON object")
    return dict(schema)


class GrammarCache:
    """A bounded LRU of compiled llama.cpp grammars, keyed by the canonical schema string.

    ``llama_cpp.LlamaGrammar.from_json_schema`` handles local ``$defs``/``$ref`` (what DSPy's
    strict schemas use), so schemas are passed through unchanged. Not thread-safe by itself;
    :class:`LlamaCppEngine` uses it under its generation lock.
    """

    def __init__(self, max_size: int = 64) -> None:
        self._max_size = max_size
        self._items: OrderedDict[str, LlamaGrammar] = OrderedDict()
        self.compiled = 0
        """How many schemas were converted (cache misses)."""

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(schema: Mapping[str, Any]) -> str:
        return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def get(self, schema: Mapping[str, Any]) -> LlamaGrammar:
        key = self.key(schema)
        grammar = self._items.get(key)
        if grammar is not None:
            self._items.move_to_end(key)
            return grammar
        from llama_cpp import LlamaGrammar

        try:
            grammar = LlamaGrammar.from_json_schema(key, verbose=False)
        except (ValueError, KeyError, TypeError, AssertionError, NotImplementedError) as exc:
            raise lm15.InvalidRequestError(f"cannot turn the response JSON schema into a grammar: {exc}") from exc
        self.compiled += 1
        self._items[key] = grammar
        if len(self._items) > self._max_size:
            self._items.popitem(last=False)
        return grammar
