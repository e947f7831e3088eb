"""A JSON adapter that does its per-signature work once.

DSPy's JSONAdapter rebuilds the system message, the output requirements and the JSON schema of the
response format on every call, although all three depend only on the (immutable) signature class and
the LM's capabilities. At thousands of calls that is most of the client's CPU per call. This subclass
memoizes them per adapter instance (one per run; nothing global).
"""

from __future__ import annotations

import copy
from typing import Any

import dspy


class MemoJSONAdapter(dspy.JSONAdapter):
    """``dspy.JSONAdapter`` with per-signature memoization (identical prompts and schemas, less CPU)."""

    def __init__(self) -> None:
        """Create the adapter with empty caches."""
        super().__init__()
        self._system: dict[Any, str] = {}
        self._requirements: dict[Any, str] = {}
        self._formats: dict[Any, dict[str, Any] | None] = {}

    def format_system_message(self, signature: Any) -> str:
        """The system message for ``signature`` (computed once)."""
        if signature not in self._system:
            self._system[signature] = super().format_system_message(signature)
        return self._system[signature]

    def user_message_output_requirements(self, signature: Any) -> str:
        """The closing output-requirements line for ``signature`` (computed once)."""
        if signature not in self._requirements:
            self._requirements[signature] = super().user_message_output_requirements(signature)
        return self._requirements[signature]

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> None:
        key = (signature, frozenset(lm.supported_params), bool(lm.supports_response_schema))
        if key not in self._formats:
            probe: dict[str, Any] = {}
            super()._prepare_response_format(lm, probe, signature)
            self._formats[key] = probe.get("response_format")
        found = self._formats[key]
        if found is not None:
            lm_kwargs["response_format"] = copy.deepcopy(found)
