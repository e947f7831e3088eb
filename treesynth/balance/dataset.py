"""The dataset to balance: records kept verbatim, plus the text each is routed by."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treesynth.errors import DataError
from treesynth.io import iter_jsonl
from treesynth.metrics.data import TextSelector

RESERVED = ("origin", "leaf_id", "path")
"""Keys balance adds to every output record; an input field with one of these names is refused."""


@dataclass(frozen=True)
class InputRecord:
    """One input line: its number, the record as read, and the text used for routing."""

    line: int
    record: dict[str, Any]
    text: str


@dataclass
class InputDataset:
    """A loaded dataset and how its texts were chosen."""

    path: Path
    records: list[InputRecord]
    selector: str
    template_fields: list[str] = field(default_factory=list)
    """The fields a synthesized record fills: the ``--field`` template's, or the string fields of a ``fields``
    object when the default rule joins them."""
    sha256: str = ""

    @property
    def text_fields(self) -> list[str]:
        """The fields synthesized records carry: the template's fields, or the one text field."""
        return self.template_fields or [self.selector]


def load_input(path: Path, field_spec: str | None) -> InputDataset:
    """Read ``path`` (JSONL) with line-numbered errors; pick the routing text with ``field_spec``."""
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a JSONL file of records")
    selector = TextSelector(field_spec)
    records: list[InputRecord] = []
    ids: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        if not records:
            selector = selector.resolve(path, lineno, obj)
        if clash := [key for key in RESERVED if key in obj]:
            raise DataError(f"{path}:{lineno}: field {clash[0]!r} is reserved for balance output; rename it")
        if "id" in obj and (first := ids.setdefault(json.dumps(obj["id"]), lineno)) != lineno:
            raise DataError(f"{path}:{lineno}: id {obj['id']!r} repeats line {first}; give every record a unique "
                            "id (or drop the 'id' field)")
        records.append(InputRecord(lineno, obj, selector.text(path, lineno, obj)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fields = list(selector.template_fields)
    if not fields and selector.spec is None and records:
        fields = _nested_text_fields(records[0].record)
    return InputDataset(path, records, selector.describe(), fields, digest)


def _nested_text_fields(record: dict[str, Any]) -> list[str]:
    """The string fields of a record's ``fields`` object: what the default rule routes by, and what a
    synthesized record must fill (so that it keeps the originals' ``fields`` keys)."""
    nested = record.get("fields")
    return [key for key, value in nested.items() if isinstance(value, str)] if isinstance(nested, dict) else []
