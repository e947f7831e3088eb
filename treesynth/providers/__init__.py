"""Language-model providers: the LM factory and the call gateway."""

from treesynth.providers.factory import EMBEDDED_MODEL, FAKE_MODEL, default_model, make_lm, make_role_lms
from treesynth.providers.gateway import CallRecord, Gateway, RetryPolicy
from treesynth.providers.structured import StructuredOutputs

__all__ = [
    "EMBEDDED_MODEL", "FAKE_MODEL", "CallRecord", "Gateway", "RetryPolicy", "StructuredOutputs", "default_model",
    "make_lm", "make_role_lms",
]
