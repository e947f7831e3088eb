"""A run directory's identity: what must match to resume it, and the one line naming what differs.

A run's identity is a JSON mapping (the task, the tree settings, the seed...); it is stored when the run
starts, and a later session in the same ``--out`` must bring an equal one. :func:`first_difference` finds the
first setting that differs, as a dotted key (``tree.width``), and :func:`mismatch_message` says which, with its
old and new value and the flag that gives the old one back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SETTING_FLAGS = {"tree.depth": "--depth", "tree.width": "--width", "tree.pivots": "--pivots", "seed": "--seed",
                 "samples_per_call": "--samples-per-call", "samples": "--samples"}
"""Identity keys given by a flag of ``treesynth run`` (a test keeps them equal to the CLI's own mapping); a
baseline's identity still holds its ``samples``."""

_MISSING = object()
_SHOWN = 60  # longest value shown in a message


def first_difference(stored: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """The first key of ``current`` whose value differs from ``stored``'s: ``(dotted key, old, new)``.

    Nested mappings are compared key by key (``tree.width``); a key only ``stored`` has is ignored at the
    top level (a setting that no longer decides identity, such as the samples target) and differs below it.
    A missing old value is ``None``.
    """
    for key, new in current.items():
        old = stored.get(key, _MISSING)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for sub in (*new, *(k for k in old if k not in new)):
                if old.get(sub, _MISSING) != new.get(sub, _MISSING):
                    return _named(f"{key}.{sub}", old.get(sub, _MISSING), new.get(sub, _MISSING))
        elif old != new:
            return _named(key, old, new)
    return None


def _named(key: str, old: Any, new: Any) -> tuple[str, Any, Any]:
    return key, None if old is _MISSING else old, None if new is _MISSING else new


def mismatch_message(out: Path, key: str, old: Any, new: Any) -> str:
    """The one-line usage error for a run in ``out`` whose ``key`` was ``old`` and is now asked as ``new``."""
    change = f"{key} {_show(old)}, not {_show(new)}"
    if key.split(".")[0] == "task":
        return f"--out {out} holds a run of a different task ({change}); use another --out, or the task it was made for"
    flag = SETTING_FLAGS.get(key)
    fix = f"{flag} {_show(old)}" if flag else f"the same {key}"
    return f"--out {out} holds a run with {change}; use another --out, or {fix} to resume it"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
