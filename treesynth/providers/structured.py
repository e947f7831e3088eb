"""Structured output per model: which ``response_format`` dialect a provider's server understands.

OpenAI-compatible servers disagree on how a JSON schema is asked for. This module names the dialects,
builds each one's ``response_format`` from the JSON schema of a signature's outputs, and keeps, per run
(:class:`StructuredOutputs`; nothing global), the dialect in force for each model:

* ``json_schema`` -- ``{"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}``, OpenAI's
  structured outputs (vLLM, llama.cpp's ``llama-server``, Ollama through litellm, LM Studio, SGLang);
* ``json_object_schema`` -- ``{"type": "json_object", "schema": {...}}`` (llama-cpp-python's server, which
  answers ``json_schema`` with an HTTP 500);
* ``json_object`` -- ``{"type": "json_object"}``, JSON mode without a schema;
* ``prompt`` -- no ``response_format``: the prompt alone describes the answer.

``auto`` picks a first dialect by model (:func:`auto_dialect`) and, when a server refuses it (an HTTP
4xx/5xx whose message names the response format or a schema, :func:`refuses_response_format`), moves that
model to the next dialect in :data:`DIALECTS` order for the rest of the run; the gateway retries the
refused call once at once. An explicit setting never falls back. In-process engines (``local/...``,
``test/fake``, any custom engine object) keep DSPy's own choice: they constrain their own output.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Literal

from treesynth.config import ROLES, ModelConfig, Role, StructuredOutput, is_local_model
from treesynth.redact import redact

logger = logging.getLogger(__name__)

Dialect = Literal["json_schema", "json_object_schema", "json_object", "prompt"]
DIALECTS: tuple[Dialect, ...] = ("json_schema", "json_object_schema", "json_object", "prompt")
"""Every dialect, in ``auto``'s fallback order (most constrained first)."""
SETTINGS: tuple[StructuredOutput, ...] = ("auto", *DIALECTS)
"""Every value of the ``structured_output`` setting."""

SCHEMA_PROVIDERS = frozenset({"hosted_vllm", "ollama", "ollama_chat"})
"""litellm providers whose servers take a JSON schema (litellm maps ``json_schema`` to Ollama's ``format``)."""
_REFUSAL_MARKERS = ("response_format", "response format", "responseformat", "schema")
_NOT_REFUSALS = frozenset({401, 403, 404, 408, 429})


def response_format(dialect: Dialect, schema: Mapping[str, Any] | None, name: str = "DSPyProgramOutputs"
                    ) -> dict[str, Any] | None:
    """The ``response_format`` that ``dialect`` sends for answers shaped by the JSON ``schema``.

    ``None`` means send none (``prompt``). Without a schema (DSPy cannot build a strict one, e.g. for an
    open-ended mapping) the schema dialects send JSON mode, as DSPy does.
    """
    if dialect == "prompt":
        return None
    if dialect == "json_object" or schema is None:
        return {"type": "json_object"}
    if dialect == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}
    return {"type": "json_object", "schema": dict(schema)}


def output_schema(signature: Any, *, native_function_calling: bool = True) -> tuple[str, dict[str, Any]] | None:
    """``(name, schema)``: the strict JSON schema of ``signature``'s outputs, exactly as DSPy sends it to a
    schema-capable model; ``None`` when DSPy would fall back to JSON mode."""
    import pydantic
    from dspy.adapters.json_adapter import _get_structured_outputs_response_format, _has_open_ended_mapping
    from dspy.adapters.types.tool import ToolCalls
    from dspy.clients.legacy_requests import _strict_json_schema

    tool_calls = any(field.annotation == ToolCalls for field in signature.output_fields.values())
    if _has_open_ended_mapping(signature) or (tool_calls and not native_function_calling):
        return None
    try:
        model = _get_structured_outputs_response_format(signature, native_function_calling)
    except (ValueError, pydantic.PydanticInvalidForJsonSchema, pydantic.PydanticSchemaGenerationError):
        return None
    return model.__name__, _strict_json_schema(model.model_json_schema())


def auto_dialect(model: str, *, api_base: str | None, known: bool, supports_schema: bool,
                 supports_format: bool) -> Dialect:
    """The first dialect ``auto`` tries for the provider ``model``.

    ``json_schema`` for schema-taking providers (:data:`SCHEMA_PROVIDERS`), for models litellm says take a
    schema, and for models litellm does not know behind an ``api_base`` (or under ``openai/``): such a
    server is usually vLLM, llama.cpp, LM Studio or SGLang, and one that is not refuses it (then ``auto``
    falls back). Otherwise what DSPy would send: JSON mode when the model takes ``response_format``, else
    the prompt alone.
    """
    provider = model.partition("/")[0]
    if provider in SCHEMA_PROVIDERS or supports_schema:
        return "json_schema"
    if not known and (api_base or provider == "openai"):
        return "json_schema"
    return "json_object" if supports_format else "prompt"


def next_dialect(dialect: Dialect) -> Dialect | None:
    """The dialect after ``dialect`` in :data:`DIALECTS` order, ``None`` after the last."""
    index = DIALECTS.index(dialect) + 1
    return DIALECTS[index] if index < len(DIALECTS) else None


def refuses_response_format(error: BaseException) -> bool:
    """Whether ``error`` is a server refusing the request's response format: an HTTP 4xx/5xx (not an auth,
    not-found, timeout or rate-limit status) whose message names ``response_format`` or a schema.

    llama-cpp-python's server answers ``json_schema`` with HTTP 500 ``1 validation error: {'loc': ('body',
    'response_format', 'type'), 'msg': "Input should be 'text' or 'json_object'", 'input': 'json_schema'}``
    (DSPy raises it as ``LMServerError``); other servers answer 400 naming ``json_schema`` or the schema.
    """
    status = getattr(error, "status", None) or getattr(error, "status_code", None)
    if not isinstance(status, int) or not 400 <= status < 600 or status in _NOT_REFUSALS:
        return False
    text = str(error).casefold()
    return any(marker in text for marker in _REFUSAL_MARKERS)


def provider_model(lm: Any) -> bool:
    """Whether ``lm`` reaches a provider through litellm or DSPy's client (its engine is named by a string),
    not an in-process engine (``local/...``, ``test/fake``, a custom engine object)."""
    model = str(getattr(lm, "model", ""))
    return isinstance(getattr(lm, "engine", None), str) and not is_local_model(model) and not model.startswith("test/")


def _known_to_litellm(model: str) -> bool:
    import litellm

    try:
        litellm.get_model_info(model)
    except Exception:  # litellm raises a bare Exception for models it does not map
        return False
    return True


class StructuredOutputs:
    """One run's structured-output state: each model's setting and the dialect in force for it.

    Args:
        settings: The setting per model string (models not listed use ``default``).
        default: The setting of every other model.

    Thread-safe (compile measures from worker threads). Build it with :meth:`from_config` and hand the same
    object to :func:`~treesynth.providers.context.lm_context` (the adapter asks it what to send) and to
    :class:`~treesynth.providers.gateway.Gateway` (which reports refusals and retries).
    """

    def __init__(self, settings: Mapping[str, StructuredOutput] | None = None, *,
                 default: StructuredOutput = "auto") -> None:
        """Create the state; see the class docstring."""
        self._settings = dict(settings or {})
        self._default: StructuredOutput = default
        self._current: dict[str, Dialect | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ModelConfig, roles: tuple[Role, ...] | None = None) -> StructuredOutputs:
        """The state for a run of ``config``: each role's model gets that role's setting."""
        settings: dict[str, StructuredOutput] = {}
        for role in roles or ROLES:
            model = config.model_for(role)
            if model is not None:
                settings.setdefault(model, config.structured_output_for(role))
        return cls(settings, default=config.structured_output)

    def setting(self, model: str) -> StructuredOutput:
        """The configured setting of ``model``."""
        return self._settings.get(model, self._default)

    def dialect(self, lm: Any) -> Dialect | None:
        """The dialect to send ``lm`` now; ``None`` leaves DSPy's own choice (in-process engines)."""
        model = str(lm.model)
        with self._lock:
            if model in self._current:
                return self._current[model]
        first = self._first(lm)  # outside the lock: it may consult litellm's model map
        with self._lock:
            return self._current.setdefault(model, first)

    def chosen(self) -> dict[str, Dialect]:
        """The dialect in force per provider model so far."""
        with self._lock:
            return {model: dialect for model, dialect in self._current.items() if dialect is not None}

    def response_format(self, dialect: Dialect, signature: Any, *, native_function_calling: bool = True
                        ) -> dict[str, Any] | None:
        """The ``response_format`` of ``dialect`` for ``signature`` (``None``: send none)."""
        if dialect in ("json_object", "prompt"):
            return response_format(dialect, None)
        built = output_schema(signature, native_function_calling=native_function_calling)
        return response_format(dialect, built[1], built[0]) if built else response_format(dialect, None)

    def fall_back(self, lm: Any, sent: Dialect | None, error: BaseException) -> bool:
        """After a call to ``lm`` sent ``sent`` and failed with ``error``: whether to retry it at once.

        Only under ``auto`` and only for a refusal of the format (:func:`refuses_response_format`): the
        model moves to the dialect after ``sent`` (once, however many calls in flight saw the refusal) and
        the call should be retried with it. ``False`` after the last dialect.
        """
        model = str(lm.model)
        if sent is None or self.setting(model) != "auto" or not refuses_response_format(error):
            return False
        with self._lock:
            current = self._current.get(model)
            if current is None:
                return False
            if current != sent:  # another call already moved on: retry with what is in force now
                return DIALECTS.index(current) > DIALECTS.index(sent)
            following = next_dialect(sent)
            if following is None:
                return False
            self._current[model] = following
        logger.info("%s refused structured output as %s (%s); using %s for the rest of the run", model, sent,
                    redact(str(error))[:160], following)
        return True

    def _first(self, lm: Any) -> Dialect | None:
        if not provider_model(lm):
            return None
        model = str(lm.model)
        setting = self.setting(model)
        if setting != "auto":
            return setting
        return auto_dialect(model, api_base=(getattr(lm, "kwargs", None) or {}).get("api_base"),
                            known=_known_to_litellm(model), supports_schema=bool(lm.supports_response_schema),
                            supports_format="response_format" in lm.supported_params)
