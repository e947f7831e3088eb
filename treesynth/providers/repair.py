"""Tolerant parsing: recover the common near-misses of structured output before a call counts as failed.

A model asked for ``{"pivots": {"items": [...]}}`` without a schema to hold it to (JSON mode, or the prompt
alone) often answers close to it. :func:`repair_output` rewrites exactly these near-misses:

(a) an output whose type is a single-field wrapper (a pydantic model whose one field is a list, such as
    ``{"samples": [...]}``) given as the bare list;
(b) the same given as a JSON string of the list (``"[\\"a\\", \\"b\\"]"``) or of the object;
(c) a whole answer that is a bare list when the signature has one output field;
(d) any value given as a JSON string of an object or list where an object or list is expected (also
    inside objects and lists).

It only reshapes: the caller validates the result with the field types (DSPy's ``parse_value``), so
pydantic's constraints (counts, enums, lengths) still apply, and garbage, wrong types and missing fields
still fail.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

__all__ = ["repair_output", "wrapper_field"]

_LISTS = (list, tuple, set, frozenset, Sequence)
_MAX_DEPTH = 16


def _base(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` metadata and without ``None`` in an optional."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) == 1:
            return _base(options[0])
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_list(annotation: Any) -> bool:
    return annotation in _LISTS or get_origin(annotation) in _LISTS


def _is_container(annotation: Any) -> bool:
    return _is_model(annotation) or _is_list(annotation) or annotation is dict or get_origin(annotation) is dict


def wrapper_field(annotation: Any) -> str | None:
    """The name of the one (list) field when ``annotation`` is a single-field wrapper model, else ``None``."""
    annotation = _base(annotation)
    if not _is_model(annotation):
        return None
    fields = annotation.model_fields
    if len(fields) != 1:
        return None
    name, info = next(iter(fields.items()))
    return name if _is_list(_base(info.annotation)) else None


def _json(text: str) -> Any:
    """``text`` decoded as JSON (a fenced ```json block too), or ``None``."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").strip()
        body = body[4:].lstrip() if body.casefold().startswith("json") else body
    try:
        return json.loads(body)
    except ValueError:
        return None


def _answer(text: str) -> Any:
    """The JSON value of an answer: all of it, else its span from the first ``{``/``[`` to the last ``}``/``]``."""
    decoded = _json(text)
    if decoded is not None:
        return decoded
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    end = max(text.rfind("}"), text.rfind("]"))
    return _json(text[min(starts):end + 1]) if starts and end > min(starts) else None


def _fix(value: Any, annotation: Any, depth: int = 0) -> Any:
    annotation = _base(annotation)
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, str) and _is_container(annotation):
        decoded = _json(value)
        if isinstance(decoded, (list, dict)):
            value = decoded
    inner = wrapper_field(annotation)
    if inner is not None and isinstance(value, list):
        value = {inner: value}
    if _is_model(annotation) and isinstance(value, dict):
        fields = annotation.model_fields
        return {key: _fix(item, fields[key].annotation, depth + 1) if key in fields else item
                for key, item in value.items()}
    if _is_list(annotation) and isinstance(value, list):
        args = get_args(annotation)
        return [_fix(item, args[0], depth + 1) for item in value] if args else value
    return value


def repair_output(fields: Mapping[str, Any], completion: str | Mapping[str, Any] | list[Any]) -> dict[str, Any] | None:
    """The output values recovered from a near-miss answer, unvalidated; ``None`` when none applies.

    Args:
        fields: The signature's output fields, name to annotation.
        completion: The answer: its text, or its already decoded JSON value.

    Returns:
        The present output fields, reshaped, when anything was reshaped; ``None`` otherwise (the answer is
        not JSON, not an object or one-field list, or already in shape, so a repair cannot help).
    """
    value: Any = _answer(completion) if isinstance(completion, str) else completion
    reshaped = False
    if isinstance(value, str):  # the whole answer as a JSON string of itself
        value, reshaped = _json(value), True
    if isinstance(value, list) and len(fields) == 1:
        value, reshaped = {next(iter(fields)): value}, True
    if not isinstance(value, Mapping):
        return None
    present = {name: value[name] for name in fields if name in value}
    repaired = {name: _fix(item, fields[name]) for name, item in present.items()}
    return repaired if reshaped or repaired != present else None
