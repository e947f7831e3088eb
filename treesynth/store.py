"""The run directory: an SQLite store that makes every run resumable, plus atomic JSON exports.

Layout of ``<out>/``:

* ``treesynth.db`` -- SQLite (WAL): expanded nodes, leaf-synthesis calls and their candidate samples, accepted
  samples (globally unique by normalized content), leaf states and the LLM call ledger. Every write is keyed (node
  id, ``(leaf_id, call_index)``, sample id) and idempotent, and each logical step is one transaction, so a process
  killed at any moment (or stopped by a full disk) resumes without losing or duplicating work.
* ``.treesynth.lock`` -- locked by the process that has the run open (:class:`~treesynth.rundir.DirLock`).
* ``tree.json``, ``samples.jsonl``, ``rejected.jsonl``, ``run.json`` -- exports, each written to a
  temporary file and renamed into place (:func:`write_atomic` and its siblings live in :mod:`treesynth.io`).

The ``meta`` table holds ``schema_version`` (:data:`SCHEMA_VERSION`): a store from before versioning, or
from an older version, is brought forward in place (tables and columns are only ever added); one from a newer
treesynth, a file that is not SQLite and another application's SQLite database are refused untouched.

Candidates the sample gate (:mod:`treesynth.gate`) turned away are stored with status ``rejected`` and
their reason, never accepted; pivots it turned away live in their node's payload (``rejected_pivots``).
Candidates that near-duplicate an accepted sample (:mod:`treesynth.neardup`) are rejected the same way.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from treesynth.errors import ConfigError, RunStateError, UnusableStoreError
from treesynth.identity import first_difference, mismatch_message
from treesynth.io import ensure_writable_dir, write_atomic, write_jsonl_atomic, write_lines_atomic
from treesynth.neardup import NEAR_DUPLICATE, NEAR_FIELDS, NearDupScreen
from treesynth.providers.gateway import CallRecord
from treesynth.rundir import LOCK_NAME, DirLock

__all__ = ["DB_NAME", "SCHEMA_VERSION", "Candidate", "RunStore", "prepare_out_dir", "write_atomic",
           "write_jsonl_atomic", "write_lines_atomic"]
DB_NAME = "treesynth.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(id TEXT PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leaf_calls(leaf_id TEXT NOT NULL, call_index INTEGER NOT NULL, ok INTEGER NOT NULL,
    PRIMARY KEY(leaf_id, call_index));
CREATE TABLE IF NOT EXISTS candidates(leaf_id TEXT NOT NULL, call_index INTEGER NOT NULL, position INTEGER NOT NULL,
    norm TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'new', reason TEXT,
    PRIMARY KEY(leaf_id, call_index, position));
CREATE TABLE IF NOT EXISTS samples(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    leaf_id TEXT NOT NULL, norm TEXT NOT NULL UNIQUE, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS samples_leaf ON samples(leaf_id);
CREATE TABLE IF NOT EXISTS routes(node_id TEXT NOT NULL, item INTEGER NOT NULL, value TEXT, reason TEXT,
    PRIMARY KEY(node_id, item));
CREATE TABLE IF NOT EXISTS leaf_state(leaf_id TEXT PRIMARY KEY, exhausted_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calls(seq INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT, model TEXT, node_id TEXT,
    ok INTEGER, error TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL, retries INTEGER,
    cached INTEGER);
"""


Candidate = tuple[str, dict[str, Any], str | None]
"""One candidate of a leaf call: normalized key, sample payload, and the gate's reason when rejected."""

SCHEMA_VERSION = 1
"""The store layout's version, in ``meta``. Bump it with every layout change and teach :func:`_migrate` the step."""
_ADDED_COLUMNS = {"candidates": {"reason"}}  # added after the first release: a store without them is older
_TABLES = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%'"


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))}


def _check_store(conn: sqlite3.Connection, path: Path) -> int | None:
    """Refuse a store this treesynth must not touch; return its schema version (``None``: new or unversioned)."""
    with path.open("rb") as handle:
        if handle.read(16) not in (b"", b"SQLite format 3\x00"):
            raise UnusableStoreError(f"{path} is not an SQLite database (corrupt, or not written by treesynth); "
                                     "move it away or choose a new --out")
    tables = {name: _columns(conn, name) for (name,) in conn.execute(_TABLES)}
    with closing(sqlite3.connect(":memory:")) as mem:
        mem.executescript(_SCHEMA)
        layout, version = {name: _columns(mem, name) for (name,) in mem.execute(_TABLES)}, None
    if {"key", "value"} <= tables.get("meta", set()):
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        text = str(row[0]) if row else "0"  # no version: a store from before versioning
        if not (text.isascii() and text.isdigit()):
            raise UnusableStoreError(f"{path} has an unreadable schema_version {text!r}; choose a new --out")
        version = int(text) or None
    if version is not None and version > SCHEMA_VERSION:
        raise UnusableStoreError(f"{path} was written by a newer treesynth (store schema {version}; this "
                                 f"treesynth reads up to {SCHEMA_VERSION}); upgrade treesynth (pip install -U "
                                 "treesynth) to use it")
    foreign = sorted(name for name, columns in tables.items() if name not in layout
                     or not layout[name] - _ADDED_COLUMNS.get(name, set()) <= columns)
    if foreign or (version is None and set(tables) == {"meta"}):  # an unversioned treesynth store has every table
        raise UnusableStoreError(f"{path} is an SQLite database of another application (unexpected tables: "
                                 f"{', '.join(foreign or ['meta'])}); treesynth leaves it untouched -- choose a "
                                 "new --out")
    return version


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a new or older store up to the schema: tables and columns are only ever added, then the version stamped."""
    for statement in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(statement)  # IF NOT EXISTS: old tables stay as they are
    if "reason" not in _columns(conn, "candidates"):
        conn.execute("ALTER TABLE candidates ADD COLUMN reason TEXT")
    conn.execute("INSERT OR REPLACE INTO meta VALUES('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` if needed; refuse a non-empty directory that is not a treesynth run."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a directory path")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not (out / DB_NAME).exists():
        raise ConfigError(f"--out {out} is not empty and holds no treesynth run; choose a new or empty directory")
    ensure_writable_dir(out)


class RunStore:
    """Keyed, idempotent persistence of one run. Use :meth:`open`; all methods run on one thread."""

    def __init__(self, out: Path, conn: sqlite3.Connection, lock: DirLock | None = None) -> None:
        """Wrap an open connection (and the lock on ``out``, released by :meth:`close`); prefer :meth:`open`."""
        self.out, self._db, self._lock = out, conn, lock or DirLock(out / LOCK_NAME, None)

    @classmethod
    def open(cls, out: Path, identity: dict[str, Any]) -> RunStore:
        """Open (or create) and lock the run in ``out`` until :meth:`close`; refuse one whose ``identity`` differs."""
        prepare_out_dir(out)
        path, lock = out / DB_NAME, DirLock.acquire(out)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            if _check_store(conn, path) != SCHEMA_VERSION:  # new, unversioned or older: add what is missing
                with _Transaction(conn):
                    _migrate(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            store = cls(out, conn, lock)
            store._check_identity(identity)
        except BaseException as exc:
            conn.close()
            lock.release(discard=True)  # a refused directory keeps no lock file it did not have
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
                raise UnusableStoreError(f"{path} is not a usable run store ({exc}); use a new --out") from None
            if isinstance(exc, sqlite3.DatabaseError):  # locked, I/O error, disk full: the machine, not the input
                raise RunStateError(f"{path} is not a usable run store ({exc}); use a new --out") from None
            raise
        return store

    def _check_identity(self, identity: dict[str, Any]) -> None:
        stored = self.get_meta("identity")
        if stored is None:
            self.set_meta("identity", identity)
        elif (differs := first_difference(stored, identity)) is not None:
            raise ConfigError(mismatch_message(self.out, *differs))

    def close(self) -> None:
        """Close the database and release the directory's lock."""
        self._db.close()
        self._lock.release()

    # -- meta -------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        """A JSON value stored under ``key``, or ``None``."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key``."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, json.dumps(value)))

    # -- nodes ------------------------------------------------------------------------------------------
    def get_node(self, node_id: str) -> dict[str, Any] | None:
        """The stored expansion of ``node_id`` or ``None`` if it was never completed."""
        row = self._db.execute("SELECT payload FROM nodes WHERE id=?", (node_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_node(self, node_id: str, payload: dict[str, Any]) -> None:
        """Record a completed node expansion (first write wins)."""
        self._db.execute("INSERT OR IGNORE INTO nodes VALUES(?, ?)", (node_id, json.dumps(payload)))

    def node_stats(self) -> tuple[int, int]:
        """Expanded nodes, and nodes known: the root and every child of an expanded node (0, 0 for none)."""
        expanded, children = self._db.execute(
            "SELECT COUNT(*), TOTAL(CASE WHEN json_extract(payload, '$.criterion') IS NULL THEN 0 WHEN "
            "json_extract(payload, '$.infinite') THEN 1 ELSE json_array_length(payload, '$.values') END) FROM nodes"
        ).fetchone()
        return int(expanded), (1 + int(children)) if expanded else 0

    # -- leaf synthesis ---------------------------------------------------------------------------------
    def leaf_call_indexes(self, leaf_id: str) -> set[int]:
        """Indexes of the synthesis calls for ``leaf_id`` that completed (in-flight ones at a kill are not)."""
        rows = self._db.execute("SELECT call_index FROM leaf_calls WHERE leaf_id=?", (leaf_id,)).fetchall()
        return {int(row[0]) for row in rows}

    def save_leaf_call(self, leaf_id: str, call_index: int, candidates: list[Candidate] | None) -> None:
        """Record one finished call and its candidates atomically (see :data:`Candidate`).

        A candidate with a reason is stored as ``rejected`` and is never accepted.
        """
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO leaf_calls VALUES(?, ?, ?)",
                             (leaf_id, call_index, int(candidates is not None)))
            self._db.executemany(
                "INSERT OR IGNORE INTO candidates(leaf_id, call_index, position, norm, payload, status, reason) "
                "VALUES(?, ?, ?, ?, ?, ?, ?)",
                [(leaf_id, call_index, i, norm, json.dumps(p), "new" if reason is None else "rejected", reason)
                 for i, (norm, p, reason) in enumerate(candidates or [])],
            )

    def accept(self, leaf_id: str, target: int, screen: NearDupScreen | None = None, below: int = 1 << 62) -> int:
        """Accept the leaf's unused candidates (of calls before ``below``) in call order up to ``target`` samples.

        Content already accepted anywhere in the run (normalized) makes a ``duplicate``. With a ``screen``, a
        near-duplicate of an accepted sample is rejected (reason ``near-duplicate``; the screen's fields, such as
        ``duplicate_of``, join its payload) and each accepted sample is indexed. Returns the leaf's sample count
        afterwards, less samples accepted from calls ``below`` or later.
        """
        with self._tx():
            have = self.leaf_sample_count(leaf_id) - int(self._db.execute("SELECT COUNT(*) FROM candidates WHERE "
                "leaf_id=? AND status='accepted' AND call_index >= ?", (leaf_id, below)).fetchone()[0])
            rows = self._db.execute(
                "SELECT call_index, position, norm, payload FROM candidates WHERE leaf_id=? AND status='new' "
                "AND call_index < ? ORDER BY call_index, position", (leaf_id, below)).fetchall()
            verdicts: list[tuple[str, str | None, str, str, int, int]] = []
            for call_index, position, norm, payload in rows:
                if have >= target:
                    break
                sample, reason = json.loads(payload), None
                exact = self._db.execute("SELECT 1 FROM samples WHERE norm=?", (norm,)).fetchone()
                near = None if screen is None or exact else screen.check(sample)
                if near is None:
                    cur = self._db.execute("INSERT OR IGNORE INTO samples(id, leaf_id, norm, payload) "
                                           "VALUES(?, ?, ?, ?)", (sample["id"], leaf_id, norm, payload))
                    status, have = ("accepted" if cur.rowcount else "duplicate"), have + cur.rowcount
                    if cur.rowcount and screen is not None:
                        screen.admit(sample)
                else:
                    status, reason, payload = "rejected", NEAR_DUPLICATE, json.dumps(sample | near)
                verdicts.append((status, reason, payload, leaf_id, call_index, position))
            self._db.executemany("UPDATE candidates SET status=?, reason=?, payload=? WHERE leaf_id=? AND call_index=? "
                                 "AND position=?", verdicts)  # in the same transaction as the samples
        return have

    def leaf_sample_count(self, leaf_id: str) -> int:
        """Accepted samples in ``leaf_id``."""
        return int(self._db.execute("SELECT COUNT(*) FROM samples WHERE leaf_id=?", (leaf_id,)).fetchone()[0])

    def recent_samples(self, leaf_id: str, limit: int, below: int = 1 << 62) -> list[dict[str, Any]]:
        """The ``limit`` latest accepted samples of ``leaf_id`` (oldest first), none from calls ``below`` or later."""
        rows = self._db.execute("SELECT payload FROM samples WHERE leaf_id=? AND id NOT IN (SELECT json_extract("
                                "payload, '$.id') FROM candidates WHERE leaf_id=? AND status='accepted' AND "
                                "call_index >= ?) ORDER BY seq DESC LIMIT ?", (leaf_id, leaf_id, below, limit))
        return [json.loads(r[0]) for r in reversed(rows.fetchall())]

    def exhausted_at(self, leaf_id: str) -> int | None:
        """The sample count at which ``leaf_id`` ran out of call budget, if it did."""
        row = self._db.execute("SELECT exhausted_at FROM leaf_state WHERE leaf_id=?", (leaf_id,)).fetchone()
        return int(row[0]) if row else None

    def mark_exhausted(self, leaf_id: str, have: int) -> None:
        """Record that ``leaf_id`` stopped at ``have`` samples after using its call budget."""
        self._db.execute("INSERT OR IGNORE INTO leaf_state VALUES(?, ?)", (leaf_id, have))

    def samples(self) -> Iterator[dict[str, Any]]:
        """Every accepted sample, grouped by leaf, in acceptance order within a leaf."""
        for (payload,) in self._db.execute("SELECT payload FROM samples ORDER BY leaf_id, seq"):
            yield json.loads(payload)

    def sample_total(self) -> int:
        """Accepted samples of the whole run."""
        return int(self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def samples_in_order(self) -> Iterator[dict[str, Any]]:
        """Every accepted sample in acceptance order (over all leaves)."""
        for (payload,) in self._db.execute("SELECT payload FROM samples ORDER BY seq"):
            yield json.loads(payload)

    def sample_counts(self) -> dict[str, int]:
        """Accepted samples per leaf."""
        return dict(self._db.execute("SELECT leaf_id, COUNT(*) FROM samples GROUP BY leaf_id").fetchall())

    def candidate_stats(self) -> dict[str, int]:
        """Candidate counts by status (``new``, ``accepted``, ``duplicate``, ``rejected``)."""
        return dict(self._db.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())

    def rejected(self) -> Iterator[dict[str, Any]]:
        """Everything the sample gate turned away: rejected candidates, then rejected pivots.

        Candidate rows have ``stage`` (``leaf`` or a baseline's stage), ``leaf_id``, ``call_index``, ``position``,
        ``reason``, ``text`` or ``fields`` (a near-duplicate: ``duplicate_of``, ``similarity``, ``measure`` too);
        pivot rows have ``stage`` ``pivots``, ``node_id``, ``reason`` and ``text``.
        """
        rows = self._db.execute("SELECT leaf_id, call_index, position, reason, payload FROM candidates "
                                "WHERE status='rejected' ORDER BY leaf_id, call_index, position").fetchall()
        for leaf_id, call_index, position, reason, payload in rows:
            sample = json.loads(payload)
            row = {"stage": sample.get("stage", "leaf"), "leaf_id": leaf_id, "call_index": call_index,
                   "position": position, "reason": reason}
            yield row | {key: sample[key] for key in ("text", "fields", *NEAR_FIELDS) if key in sample}
        for node_id, payload in self._nodes_with_rejected_pivots():
            for pivot in json.loads(payload)["rejected_pivots"]:
                yield {"stage": "pivots", "node_id": node_id, "reason": pivot["reason"], "text": pivot["text"]}

    def rejection_stats(self) -> dict[str, int]:
        """How many candidates and pivots the sample gate rejected, by reason (most frequent first)."""
        counts: Counter[str] = Counter(dict(self._db.execute(
            "SELECT reason, COUNT(*) FROM candidates WHERE status='rejected' GROUP BY reason").fetchall()))
        for _, payload in self._nodes_with_rejected_pivots():
            counts.update(pivot["reason"] for pivot in json.loads(payload)["rejected_pivots"])
        return dict(counts.most_common())

    def _nodes_with_rejected_pivots(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT id, payload FROM nodes WHERE json_extract(payload, '$.rejected_pivots') "
                                "IS NOT NULL ORDER BY id").fetchall()

    # -- routing (balance) ------------------------------------------------------------------------------
    def routes(self, node_id: str) -> dict[int, tuple[str | None, str | None]]:
        """Stored routing of items at ``node_id``: item -> (value or None, reason when unrouted)."""
        rows = self._db.execute("SELECT item, value, reason FROM routes WHERE node_id=?", (node_id,)).fetchall()
        return {int(item): (value, reason) for item, value, reason in rows}

    def save_routes(self, node_id: str, routed: dict[int, tuple[str | None, str | None]]) -> None:
        """Record routing outcomes for ``node_id`` (first write wins)."""
        with self._tx():
            self._db.executemany("INSERT OR IGNORE INTO routes VALUES(?, ?, ?, ?)",
                                 [(node_id, item, value, reason) for item, (value, reason) in routed.items()])

    def route_count(self) -> int:
        """Routing decisions recorded (one per item per node it was routed at)."""
        return int(self._db.execute("SELECT COUNT(*) FROM routes WHERE node_id NOT LIKE '%#%'").fetchone()[0])

    def add_originals(self, rows: list[tuple[str, str, str, dict[str, Any]]]) -> set[str]:
        """Insert kept original samples ``(id, leaf_id, norm, payload)``; return ids rejected as duplicates."""
        duplicates: set[str] = set()
        with self._tx():
            for sample_id, leaf_id, norm, payload in rows:
                if self._db.execute("SELECT 1 FROM samples WHERE id=?", (sample_id,)).fetchone():
                    continue
                cur = self._db.execute("INSERT OR IGNORE INTO samples(id, leaf_id, norm, payload) VALUES(?, ?, ?, ?)",
                                       (sample_id, leaf_id, norm, json.dumps(payload)))
                if not cur.rowcount:
                    duplicates.add(sample_id)
        return duplicates

    # -- ledger -----------------------------------------------------------------------------------------
    def record_call(self, record: CallRecord) -> None:
        """Append one LLM call to the ledger."""
        self._db.execute(
            "INSERT INTO calls(stage, model, node_id, ok, error, prompt_tokens, completion_tokens, seconds, "
            "retries, cached) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.stage, record.model, record.node_id, int(record.ok), record.error, record.prompt_tokens,
             record.completion_tokens, record.seconds, record.retries, int(record.cached)))

    def ledger(self) -> dict[str, Any]:
        """Totals of the call ledger, overall and per stage and model."""
        rows = self._db.execute(
            "SELECT stage, model, COUNT(*), SUM(1 - ok), SUM(CASE WHEN error = 'parse' THEN 1 ELSE 0 END), "
            "SUM(prompt_tokens), SUM(completion_tokens), SUM(seconds), SUM(retries), SUM(cached) "
            "FROM calls GROUP BY stage, model ORDER BY stage, model").fetchall()
        per_stage = [
            {"stage": s, "model": m, "calls": c, "failed": f, "parse_failures": p, "prompt_tokens": pt,
             "completion_tokens": ct, "seconds": round(sec, 3), "retries": r, "cache_hits": h}
            for s, m, c, f, p, pt, ct, sec, r, h in rows
        ]
        totals = ("calls", "failed", "prompt_tokens", "completion_tokens", "retries", "cache_hits")
        return {**{key: sum(r[key] for r in per_stage) for key in totals}, "by_stage": per_stage}

    # -- helpers ----------------------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
