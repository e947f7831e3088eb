"""Load datasets for evaluation: a JSONL file or a run directory, streamed line by line.

Every malformed input raises :class:`~treesynth.errors.DataError` with a one-line message that starts with
``<file>:<line>:``. The text of a record is chosen by a :class:`TextSelector`:

* a field name (``--field answer``), looked up in the record, then in its ``fields`` object;
* a template over fields (``--field "{question} {answer}"``), same lookup;
* by default ``text``; else, for structured run samples, the string values of ``fields`` joined by
  newlines; else the only string field of the first record (more than one → ``--field`` is required).

A record carries structure when it has ``leaf_id``; then ``path`` (a list of ``{"criterion", "value"}``)
gives the first-level branch. Either every record of a file has ``leaf_id`` or none does.
"""

from __future__ import annotations

import dataclasses
import json
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treesynth.errors import DataError
from treesynth.io import iter_jsonl, type_name
from treesynth.metrics.structure import branch_of_path

SAMPLES_FILE = "samples.jsonl"
TREE_FILE = "tree.json"
RUN_FILE = "run.json"

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Record:
    """What evaluation keeps of one sample."""

    text: str
    line: int
    leaf_id: str | None = None
    branch: str | None = None


@dataclass
class LoadedDataset:
    """One evaluated input.

    Attributes:
        name: Display name (file stem or run-directory name, made unique by the caller).
        source: The path given on the command line.
        kind: ``"run"`` for a run directory, ``"jsonl"`` for a file.
        field: How texts were chosen (a field name, a template, or a description of the default).
        records: The samples, in file order.
        tree: ``tree.json`` of a run directory, if present.
        run: ``run.json`` of a run directory, if present.
    """

    name: str
    source: Path
    kind: str
    field: str
    records: list[Record] = dataclasses.field(default_factory=list)
    tree: dict[str, Any] | None = None
    run: dict[str, Any] | None = None

    @property
    def texts(self) -> list[str]:
        """The text of every record."""
        return [r.text for r in self.records]

    @property
    def has_structure(self) -> bool:
        """Whether records carry ``leaf_id`` (structure metrics apply)."""
        return bool(self.records) and self.records[0].leaf_id is not None

    def quota(self) -> dict[str, float] | None:
        """Per-leaf quotas from ``run.json["allocation"]["quota"]``, if present and well-formed."""
        allocation = (self.run or {}).get("allocation")
        quota = allocation.get("quota") if isinstance(allocation, Mapping) else None
        if not isinstance(quota, Mapping):
            return None
        return {str(k): float(v) for k, v in quota.items() if isinstance(v, int | float)}


def _lookup(record: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    if key in record:
        return True, record[key]
    nested = record.get("fields")
    if isinstance(nested, Mapping) and key in nested:
        return True, nested[key]
    return False, None


def _available(record: Mapping[str, Any]) -> str:
    keys = [k for k in record if k != "fields"]
    nested = record.get("fields")
    if isinstance(nested, Mapping):
        keys += [f"fields.{k}" for k in nested]
    return ", ".join(keys) or "none"


class TextSelector:
    """Extracts the text of a record from a field name, a ``{field}`` template, or the default rule."""

    def __init__(self, spec: str | None = None) -> None:
        self.spec = spec
        self.template_fields: list[str] = []
        if spec is not None and "{" in spec:
            try:
                self.template_fields = [f for _, f, _, _ in _FORMATTER.parse(spec) if f is not None]
            except ValueError as exc:
                raise DataError(f"--field template {spec!r} is malformed: {exc}") from exc
            if not self.template_fields or any(not f for f in self.template_fields):
                raise DataError(f"--field template {spec!r} needs named fields like {{question}}")

    def resolve(self, path: Path, lineno: int, record: Mapping[str, Any]) -> TextSelector:
        """Fix the default rule on the first record; returns a selector with an explicit spec."""
        if self.spec is not None:
            return self
        if "text" in record:
            return TextSelector("text")
        nested = record.get("fields")
        if isinstance(nested, Mapping) and nested:
            return _FieldsJoiner()
        strings = [k for k, v in record.items() if isinstance(v, str)]
        if len(strings) == 1:
            return TextSelector(strings[0])
        found = ", ".join(strings) if strings else "none"
        raise DataError(f"{path}:{lineno}: no 'text' field and {len(strings)} string fields ({found}); pass --field")

    def describe(self) -> str:
        """The spec as shown in reports."""
        return self.spec or "text"

    def text(self, path: Path, lineno: int, record: Mapping[str, Any]) -> str:
        """The text of ``record``; raises :class:`DataError` naming the file and line."""
        if self.template_fields:
            values = {name: self._scalar(path, lineno, record, name) for name in self.template_fields}
            return _FORMATTER.vformat(self.spec or "", (), values)
        key = self.spec or "text"
        found, value = _lookup(record, key)
        if not found:
            raise DataError(f"{path}:{lineno}: missing field {key!r} (fields: {_available(record)})")
        if not isinstance(value, str):
            raise DataError(f"{path}:{lineno}: field {key!r} is {type_name(value)}, expected a string; pass --field "
                            "naming a string field, or flatten nested records into top-level string fields")
        return value

    @staticmethod
    def _scalar(path: Path, lineno: int, record: Mapping[str, Any], name: str) -> Any:
        found, value = _lookup(record, name)
        if not found:
            raise DataError(f"{path}:{lineno}: missing field {name!r} (fields: {_available(record)})")
        if isinstance(value, dict | list) or value is None:
            raise DataError(f"{path}:{lineno}: field {name!r} is {type_name(value)}, expected a string or number")
        return value


class _FieldsJoiner(TextSelector):
    """Default for structured samples: the string values of ``fields`` joined by newlines."""

    def __init__(self) -> None:
        super().__init__(None)

    def describe(self) -> str:
        return "fields (values joined by newlines)"

    def text(self, path: Path, lineno: int, record: Mapping[str, Any]) -> str:
        nested = record.get("fields")
        if not isinstance(nested, Mapping):
            raise DataError(f"{path}:{lineno}: missing object 'fields' (fields: {_available(record)})")
        values = [v for v in nested.values() if isinstance(v, str)]
        if not values:
            raise DataError(f"{path}:{lineno}: 'fields' has no string values")
        return "\n".join(values)


def _structure(path: Path, lineno: int, record: Mapping[str, Any]) -> tuple[str, str]:
    leaf_id = record.get("leaf_id")
    if not isinstance(leaf_id, str):
        raise DataError(f"{path}:{lineno}: field 'leaf_id' is {type_name(leaf_id)}, expected a string")
    steps = record.get("path", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) and "value" in s for s in steps):
        raise DataError(f"{path}:{lineno}: field 'path' must be a list of {{criterion, value}} objects")
    return leaf_id, branch_of_path(steps)


class RecordReader:
    """Streams :class:`Record` objects from a JSONL file, checking every line.

    After the first record, :attr:`field` tells how texts are chosen (as shown in reports).

    Raises (while iterating):
        DataError: bad JSON, a missing or non-string text field, or ``leaf_id`` on some records only.
    """

    def __init__(self, path: Path, selector: TextSelector | None = None) -> None:
        self.path = path
        self.selector = selector or TextSelector()
        self.field = self.selector.describe()

    def __iter__(self) -> Iterator[Record]:
        path = self.path
        chosen: TextSelector | None = None
        structured = False
        for lineno, obj in iter_jsonl(path):
            if chosen is None:
                chosen = self.selector.resolve(path, lineno, obj)
                self.field = chosen.describe()
                structured = "leaf_id" in obj
            elif ("leaf_id" in obj) != structured:
                state = "lacks" if structured else "has"
                raise DataError(f"{path}:{lineno}: record {state} 'leaf_id' unlike the first record (mixed records)")
            text = chosen.text(path, lineno, obj)
            leaf_id, branch = _structure(path, lineno, obj) if structured else (None, None)
            yield Record(text=text, line=lineno, leaf_id=leaf_id, branch=branch)


def iter_records(path: Path, selector: TextSelector | None = None) -> Iterator[Record]:
    """Stream the records of a JSONL file (see :class:`RecordReader`)."""
    return iter(RecordReader(path, selector))


def _load_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}:1: expected a JSON object, got {type_name(data)}")
    return data


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run directory (a folder holding ``samples.jsonl``)."""
    return path.is_dir() and (path / SAMPLES_FILE).is_file()


def load_dataset(path: Path, selector: TextSelector | None = None, *, name: str | None = None) -> LoadedDataset:
    """Load a JSONL file or a run directory (``samples.jsonl`` + optional ``tree.json`` / ``run.json``).

    Raises:
        DataError: the path is missing, is a folder without ``samples.jsonl``, or any file is malformed.
    """
    if path.is_dir():
        if not is_run_dir(path):
            raise DataError(f"{path}: not a run directory (no {SAMPLES_FILE}) and not a JSONL file")
        samples = path / SAMPLES_FILE
        tree, run, kind = _load_json(path / TREE_FILE), _load_json(path / RUN_FILE), "run"
        default_name = path.resolve().name
    elif path.is_file():
        samples, tree, run, kind = path, None, None, "jsonl"
        default_name = path.stem
    else:
        raise DataError(f"{path}: no such file or directory")
    if tree is not None and not isinstance(tree.get("root"), dict):
        raise DataError(f"{path / TREE_FILE}:1: missing object 'root'")
    reader = RecordReader(samples, selector)
    records = list(reader)
    return LoadedDataset(
        name=name or default_name,
        source=path,
        kind=kind,
        field=reader.field,
        records=records,
        tree=tree,
        run=run,
    )
