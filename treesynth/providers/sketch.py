"""Compact, readable sketches of JSON shapes for prompts.

DSPy's JSONAdapter pastes each output field's full JSON schema into the system prompt. Small models read
schema words (``items``, ``minItems``, ``properties``) as content and copy them into their answers, and the
schema costs prompt tokens that a CPU pays for on every call. A sketch says the same in a form a model
reads as an example answer: ``{"samples": [exactly 4 strings: one complete example each]}``. Constraints
are still enforced where they belong, by the decoding grammar or the provider's structured output and by
pydantic when the answer is parsed.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydantic import TypeAdapter

__all__ = ["annotation_sketch", "schema_sketch"]

_SCALARS = {"integer": "<integer>", "number": "<number>", "boolean": "true or false", "null": "null"}


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = defs.get(ref.rsplit("/", 1)[-1], {})
        return {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return {**_resolve(schema["allOf"][0], defs), **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def _count(schema: dict[str, Any]) -> str:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and low == high:
        return f"exactly {low}"
    if low is not None and high is not None:
        return f"{low} to {high}"
    if high is not None:
        return f"at most {high}"
    if low:
        return f"at least {low}"
    return "any number of"


def _plural(item: dict[str, Any], defs: dict[str, Any], count: str) -> str:
    item = _resolve(item, defs)
    kind = item.get("type")
    described = f": {item['description']}" if item.get("description") else ""
    if "enum" in item:
        return f"{count} values, each one of {' | '.join(json.dumps(v) for v in item['enum'])}"
    if kind == "string":
        return f"{count} strings{described}"
    if kind in _SCALARS:
        return f"{count} {kind}s{described}"
    return f"{count} items like {schema_sketch(item, defs)}"


def schema_sketch(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> str:
    """A one-line sketch of the JSON value ``schema`` describes (``defs``: its ``$defs``)."""
    defs = {**(defs or {}), **schema.get("$defs", {})}
    schema = _resolve(schema, defs)
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(schema_sketch(option, defs) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        body = ", ".join(f"{json.dumps(name)}: {schema_sketch(value, defs)}"
                         for name, value in schema["properties"].items())
        return "{" + body + "}"
    if kind == "object":
        return "{...}"
    if kind == "array":
        item = schema.get("items", {})
        description = schema.get("description")
        inner = _plural(item, defs, _count(schema))
        if description and not _resolve(item, defs).get("description"):
            inner = f"{inner}: {description}"
        return f"[{inner}]"
    if kind == "string":
        description = schema.get("description")
        return f'"<{description}>"' if description else '"<text>"'
    return _SCALARS.get(str(kind), "<value>")


@cache
def annotation_sketch(annotation: Any) -> str:
    """The sketch of a Python type annotation (a pydantic model, ``list[str]``, ``Literal``...), memoized."""
    if annotation is str:
        return '"<text>"'
    schema = TypeAdapter(annotation).json_schema()
    return schema_sketch(schema)
