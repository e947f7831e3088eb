"""What an export reads: one run directory (``run``, ``balance``, or a ``bench`` cell) as rows with provenance.

A row is its content (the flat columns a user trains on: a structured sample's fields, a text sample's ``text``,
or a balanced record's own columns) and its provenance (``treesynth_*`` columns: sample id, leaf, path, origin,
model, per-call seed and call id). The call a sample came from is looked up read-only in the run's store; the
run directory is never modified.
"""

from __future__ import annotations

import json
import sqlite3
import string
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treesynth.errors import ConfigError
from treesynth.io import iter_jsonl
from treesynth.models import stable_seed
from treesynth.store import DB_NAME

PREFIX = "treesynth_"
"""Every provenance column starts with this, so a training view drops them by prefix."""
PROVENANCE = ("id", "leaf_id", "path", "origin", "model", "seed", "call_id")
BALANCE_META = ("origin", "leaf_id", "path")
KINDS = ("run", "balance", "baseline")


@dataclass(frozen=True)
class SourceRow:
    """One sample: its content columns, its ``treesynth_*`` provenance columns and its path's steps."""

    content: dict[str, Any]
    provenance: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunSource:
    """A run directory read for export.

    Attributes:
        path: The run directory.
        run: ``run.json`` as a mapping (read with ``.get``: newer fields may be absent).
        tree: ``tree.json``, if present.
        rows: The delivered samples, in file order.
        content_fields: The fields that were generated or routed, in order (the default field mapping uses them).
        samples_file: ``samples.jsonl``, or ``balanced.jsonl`` for a balance run.
        rejected: The lines of ``rejected.jsonl`` (what the sample gate turned away), if present.
    """

    path: Path
    run: dict[str, Any]
    tree: dict[str, Any] | None
    rows: list[SourceRow] = field(default_factory=list)
    content_fields: list[str] = field(default_factory=list)
    samples_file: Path = Path()
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``run``, ``balance`` or ``baseline``."""
        return str(self.run["kind"])

    @property
    def task(self) -> dict[str, Any]:
        """The task: ``description``, ``fields``, ``first_split``."""
        task = self.run.get("task")
        return task if isinstance(task, dict) else {"description": self.path.name}

    @property
    def config(self) -> dict[str, Any]:
        """The run's full configuration."""
        config = self.run.get("config")
        return config if isinstance(config, dict) else {}

    def leaf_counts(self) -> dict[str, int]:
        """Exported samples per leaf."""
        counts: dict[str, int] = {}
        for row in self.rows:
            leaf = row.provenance.get(PREFIX + "leaf_id")
            if isinstance(leaf, str):
                counts[leaf] = counts.get(leaf, 0) + 1
        return counts


def synthesis_model(config: Mapping[str, Any]) -> str | None:
    """The model that wrote the samples: the ``leaf`` role's override, else the run's model."""
    found = config.get("model")
    model: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    role = (model.get("roles") or {}).get("leaf") or {}
    found = role.get("model") or model.get("model")
    return str(found) if found else None


def path_text(steps: Any) -> str:
    """A sample's path as one string: ``criterion: value > criterion: value``."""
    if not isinstance(steps, list):
        return ""
    return " > ".join(f"{s.get('criterion')}: {s.get('value')}" for s in steps if isinstance(s, Mapping))


def _load_json(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON; pass a {what} written by treesynth") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a {what} written by treesynth")
    return data


def _stored_samples(run_dir: Path, *, payloads: bool) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The store's samples in export order (if ``payloads``) and each synthesized sample's call index.

    Read-only; both are empty when the store is absent or unreadable (provenance then lacks the calls).
    """
    db = run_dir / DB_NAME
    if not db.is_file():
        return [], {}
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            samples = [json.loads(p) for (p,) in conn.execute(
                "SELECT payload FROM samples ORDER BY leaf_id, seq")] if payloads else []
            calls = conn.execute("SELECT json_extract(payload, '$.id'), call_index FROM candidates "
                                 "WHERE status='accepted'").fetchall()
    except sqlite3.Error:
        return [], {}
    return samples, {str(sample_id): int(index) for sample_id, index in calls}


def template_names(spec: str) -> list[str]:
    """The field names of a ``--field`` spec: the name itself, or the ``{names}`` of a template."""
    if "{" not in spec:
        return [spec]
    try:
        return [name for _, name, _, _ in string.Formatter().parse(spec) if name]
    except ValueError:
        return []


def balance_fields(spec: str, records: list[dict[str, Any]], rows: list[SourceRow]) -> list[str]:
    """The fields a balance run routed by: the ``--field`` name(s); else a record's nested ``fields``; else the
    columns of a synthesized row; else the string columns."""
    available = {name for row in rows for name in row.content}
    names = template_names(spec)
    if names and all(name in available for name in names):
        return names
    nested = next((r["fields"] for r in records if isinstance(r.get("fields"), Mapping)), None)
    if nested:
        return list(nested)
    synthesized = next((row.content for row in rows if row.provenance[PREFIX + "origin"] == "synthesized"), None)
    first = synthesized or (rows[0].content if rows else {})
    return [name for name, value in first.items() if isinstance(value, str)] or list(first)


def load_source(run_dir: Path) -> RunSource:
    """Read a ``run``, ``balance`` or ``bench``-cell directory for export.

    Raises:
        ConfigError: ``run_dir`` is not such a directory (the message names the fix), or a file is malformed.
    """
    if (run_dir / "cells").is_dir() and not (run_dir / "run.json").exists():
        raise ConfigError(f"{run_dir} is a bench sweep; export one cell: {run_dir / 'cells' / '<cell>'}")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory; pass a run directory (holding run.json)")
    run = _load_json(run_dir / "run.json", "run.json")
    if run is None:
        raise ConfigError(f"{run_dir} has no run.json; pass a directory written by treesynth run, balance or bench")
    if run.get("kind") not in KINDS:
        raise ConfigError(f"{run_dir / 'run.json'}: kind {run.get('kind')!r} has no dataset to export; pass a run, "
                          "balance or bench-cell directory")
    source = RunSource(path=run_dir, run=run, tree=_load_json(run_dir / "tree.json", "tree.json"))
    name = "balanced.jsonl" if source.kind == "balance" else "samples.jsonl"
    source.samples_file = run_dir / name
    if not source.samples_file.is_file():
        raise ConfigError(f"{source.samples_file} does not exist; finish the run first (re-run its command)")
    if (run_dir / "rejected.jsonl").is_file():
        source.rejected = [row for _, row in iter_jsonl(run_dir / "rejected.jsonl", allow_empty=True)]
    stored, call_of = _stored_samples(run_dir, payloads=source.kind == "balance")
    records = [record for _, record in iter_jsonl(source.samples_file, allow_empty=True)]
    if source.kind == "balance":
        ids = [s.get("id") for s in stored] if [s.get("leaf_id") for s in stored] == [
            r.get("leaf_id") for r in records] else [None] * len(records)
        source.rows = [_balance_row(source, r, i, call_of) for r, i in zip(records, ids, strict=True)]
        spec = str((source.run.get("input") or {}).get("field") or "text")
        source.content_fields = balance_fields(spec, records, source.rows)
    else:
        fields = list(source.task.get("fields") or {})
        source.content_fields = fields or ["text"]
        source.rows = [_sample_row(source, r, call_of) for r in records]
    return source


def _provenance(source: RunSource, sample_id: Any, record: Mapping[str, Any], origin: str,
                call_of: Mapping[str, int]) -> dict[str, Any]:
    leaf_id = record.get("leaf_id")
    call = call_of.get(str(sample_id)) if origin != "original" else None
    synthesized = origin != "original"
    seed = source.config.get("seed", 0)
    return {
        PREFIX + "id": None if sample_id is None else str(sample_id),
        PREFIX + "leaf_id": None if leaf_id is None else str(leaf_id),
        PREFIX + "path": path_text(record.get("path")),
        PREFIX + "origin": origin,
        PREFIX + "model": synthesis_model(source.config) if synthesized else None,
        PREFIX + "seed": stable_seed(seed, leaf_id, call) if call is not None else None,
        PREFIX + "call_id": f"{leaf_id}/{call}" if call is not None else None,
    }


def _sample_row(source: RunSource, record: dict[str, Any], call_of: Mapping[str, int]) -> SourceRow:
    fields = record.get("fields")
    content = dict(fields) if isinstance(fields, Mapping) else {"text": record.get("text", "")}
    origin = "treesynth" if source.kind == "run" else str(source.run.get("method") or "baseline")
    return SourceRow(content, _provenance(source, record.get("id"), record, origin, call_of), _steps(record))


def _steps(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    steps = record.get("path")
    return [dict(s) for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []


def _balance_row(source: RunSource, record: dict[str, Any], sample_id: Any, call_of: Mapping[str, int]) -> SourceRow:
    content = {k: v for k, v in record.items() if k not in BALANCE_META}
    nested = content.get("fields")
    if isinstance(nested, Mapping):  # records shaped like samples: their fields become flat columns
        content = {**{k: v for k, v in content.items() if k != "fields"}, **nested}
    origin = str(record.get("origin", "synthesized"))
    return SourceRow(content, _provenance(source, sample_id, record, origin, call_of), _steps(record))
