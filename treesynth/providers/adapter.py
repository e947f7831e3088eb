"""The JSON adapter every treesynth call goes through: compact, task-first prompts, computed once.

Prompts: DSPy's JSONAdapter opens with a generic field listing and pastes each output's JSON schema into
the system message; small models copy those schema words (``items``, ``minItems``) into their answers, and
every schema token costs prompt evaluation on a CPU. This adapter puts the instruction first, lists the
inputs with their descriptions, and shows the answer's shape as a sketch
(:func:`~treesynth.providers.sketch.annotation_sketch`). Inputs keep DSPy's ``[[ ## field ## ]]`` sections.
The constraints themselves are enforced by the grammar or the provider's structured output and by pydantic.

Speed: DSPy rebuilds the system message, the output requirements and the response format's JSON schema on
every call, although all three depend only on the (immutable) signature class and the LM's capabilities.
They are memoized per adapter instance (one per run; nothing global).

Structured output: given the run's :class:`~treesynth.providers.structured.StructuredOutputs`, the
``response_format`` sent to a provider model is the one of the dialect in force for it (``json_schema``,
``json_object_schema``, ``json_object`` or none); without one, or for in-process engines, DSPy's own choice.
An answer that fails to parse gets one tolerant second look (:func:`~treesynth.providers.repair.repair_output`)
for the common near-misses, validated by the same field types.
"""

from __future__ import annotations

import copy
import json
import textwrap
from typing import Any

import dspy
from dspy.adapters.utils import apply_output_field_defaults, parse_value
from dspy.utils.exceptions import AdapterParseError

from treesynth.providers.repair import repair_output
from treesynth.providers.sketch import annotation_sketch
from treesynth.providers.structured import StructuredOutputs

NO_ITEMS = "(none)"
"""How an empty list input is shown."""


def format_input_value(value: Any) -> str | None:
    """A list of one-line strings as numbered lines (``1. ...``), ``(none)`` when empty; ``None`` for other
    values (DSPy's own formatting applies). Small models read numbered lines far better than a JSON array."""
    if isinstance(value, list | tuple) and all(isinstance(item, str) and "\n" not in item for item in value):
        return "\n".join(f"{n}. {item}" for n, item in enumerate(value, 1)) or NO_ITEMS
    return None


def _described(info: Any) -> str:
    """A field's description, or '' when DSPy only filled in its placeholder (``${name}``)."""
    desc = str((info.json_schema_extra or {}).get("desc") or "")
    return "" if desc.startswith("${") else desc


class MemoJSONAdapter(dspy.JSONAdapter):
    """``dspy.JSONAdapter`` with per-signature memoization (identical prompts and schemas, less CPU)."""

    def __init__(self, structured: StructuredOutputs | None = None) -> None:
        """Create the adapter with empty caches; ``structured`` picks the response format per model (``None``:
        DSPy's own choice)."""
        super().__init__()
        self.structured = structured
        self._system: dict[Any, str] = {}
        self._requirements: dict[Any, str] = {}
        self._formats: dict[Any, dict[str, Any] | None] = {}
        self._format_json: dict[int, str | None] = {}
        """JSON text of each memoized response format (by ``id``; the formats live as long as the adapter)."""

    def format_system_message(self, signature: Any) -> str:
        """The system message for ``signature`` (computed once): instruction, inputs, answer shape."""
        if signature not in self._system:
            self._system[signature] = "\n\n".join(part for part in (
                self.format_task_description(signature),
                self.format_field_description(signature),
                self.format_field_structure(signature),
            ) if part)
        return self._system[signature]

    def format_user_message_content(self, signature: Any, inputs: dict[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        """The inputs under ``[[ ## name ## ]]`` markers (string lists numbered), then the output reminder."""
        from dspy.adapters.utils import format_field_value

        parts = [prefix]
        for name, info in signature.input_fields.items():
            if name in inputs:
                value = inputs[name]
                text = format_input_value(value)
                parts.append(f"[[ ## {name} ## ]]\n{format_field_value(info, value) if text is None else text}")
        if main_request:
            parts.append(self.user_message_output_requirements(signature))
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def format_task_description(self, signature: Any) -> str:
        """The signature's instruction, as written."""
        return textwrap.dedent(str(signature.instructions)).strip()

    def format_field_description(self, signature: Any) -> str:
        """One line per input field: its name and description."""
        lines = [f"- `{name}`" + (f": {desc}" if (desc := _described(info)) else "")
                 for name, info in signature.input_fields.items()]
        return "Inputs (each given after a [[ ## name ## ]] marker):\n" + "\n".join(lines) if lines else ""

    def format_field_structure(self, signature: Any) -> str:
        """The answer: one JSON object whose shape is sketched, output descriptions beside it."""
        shape = ", ".join(f'"{name}": {annotation_sketch(info.annotation)}'
                          for name, info in signature.output_fields.items())
        notes = [f"- `{name}`: {desc}" for name, info in signature.output_fields.items() if (desc := _described(info))]
        return "\n".join([f"Answer with one JSON object and nothing else, shaped like {{{shape}}}", *notes])

    def user_message_output_requirements(self, signature: Any) -> str:
        """The closing output-requirements line for ``signature`` (computed once)."""
        if signature not in self._requirements:
            keys = ", ".join(f"`{name}`" for name in signature.output_fields)
            self._requirements[signature] = f"Respond with the JSON object (keys: {keys}) and nothing else."
        return self._requirements[signature]

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> None:
        structured = self.structured
        dialect = structured.dialect(lm) if structured is not None else None
        key: tuple[Any, ...]
        if structured is None or dialect is None:  # DSPy's own choice, from the LM's capabilities
            key = (signature, frozenset(lm.supported_params), bool(lm.supports_response_schema))
            if key not in self._formats:
                probe: dict[str, Any] = {}
                super()._prepare_response_format(lm, probe, signature)
                self._formats[key] = probe.get("response_format")
        else:  # keyed by dialect: a fallback to the next dialect takes effect on the next call
            key = (signature, dialect, self.use_native_function_calling)
            if key not in self._formats:
                self._formats[key] = structured.response_format(
                    dialect, signature, native_function_calling=self.use_native_function_calling)
        found = self._formats[key]
        if found is not None:
            lm_kwargs["response_format"] = self._fresh(found)
        elif dialect is not None:
            lm_kwargs.pop("response_format", None)  # the prompt alone

    def _fresh(self, found: Any) -> Any:
        """A private copy of a memoized response format (the LM call may change what it is given).

        A plain JSON value is copied by decoding its memoized JSON text (several times faster than ``deepcopy``
        on a schema); anything else (a pydantic model class, a tuple somewhere) by ``deepcopy``.
        """
        key = id(found)
        if key not in self._format_json:
            try:
                text: str | None = json.dumps(found)
            except (TypeError, ValueError):  # not plain JSON
                text = None
            self._format_json[key] = text if text is not None and json.loads(text) == found else None
        text = self._format_json[key]
        return json.loads(text) if text is not None else copy.deepcopy(found)

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        """DSPy's parse; on failure, one repair of the common near-misses (see :mod:`~treesynth.providers.repair`),
        validated by the fields' types, before the original error is raised."""
        try:
            parsed: dict[str, Any] = super().parse(signature, completion)
        except AdapterParseError:
            repaired = _repaired(signature, completion)
            if repaired is None:
                raise
            return repaired
        return parsed


def _repaired(signature: Any, completion: str) -> dict[str, Any] | None:
    """``completion`` repaired and validated as DSPy validates outputs; ``None`` when it cannot be."""
    fields = {name: info.annotation for name, info in signature.output_fields.items()}
    raw = repair_output(fields, completion)
    if raw is None:
        return None
    try:
        values = {name: parse_value(value, fields[name]) for name, value in raw.items()}
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return None
    values = apply_output_field_defaults(signature, values)
    return values if values.keys() == signature.output_fields.keys() else None
