"""The DSPy settings every treesynth entry point runs under (entered once per run, never configured globally)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import dspy

from treesynth.providers.adapter import MemoJSONAdapter


def lm_context() -> AbstractContextManager[Any]:
    """``dspy.context`` with the (memoizing) JSON adapter (schema-constrained outputs), usage tracking on (the ledger
    reads tokens from it) and DSPy's in-memory call history off (the run store's ledger replaces it, and
    the history would grow with every call of a 100k-sample run)."""
    context: AbstractContextManager[Any] = dspy.context(adapter=MemoJSONAdapter(), track_usage=True,
                                                        disable_history=True)
    return context
