"""The DSPy settings every treesynth entry point runs under (entered once per run, never configured globally)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import dspy

from treesynth.providers.adapter import MemoJSONAdapter
from treesynth.providers.structured import StructuredOutputs


def lm_context(structured: StructuredOutputs | None = None, **settings: Any) -> AbstractContextManager[Any]:
    """``dspy.context`` with the (memoizing) JSON adapter (schema-constrained outputs), usage tracking on (the ledger
    reads tokens from it) and DSPy's in-memory call history off (the run store's ledger replaces it, and
    the history would grow with every call of a 100k-sample run).

    ``structured`` is the run's structured-output state: the adapter sends each provider model the
    ``response_format`` of the dialect in force for it (pass the same object to the run's
    :class:`~treesynth.providers.gateway.Gateway`, which falls back on refusals). Without it, DSPy's own
    choice. ``settings`` are further ``dspy.context`` settings (e.g. ``callbacks``), overriding these.
    """
    chosen: dict[str, Any] = {"adapter": MemoJSONAdapter(structured), "track_usage": True, "disable_history": True,
                              **settings}
    context: AbstractContextManager[Any] = dspy.context(**chosen)
    return context
