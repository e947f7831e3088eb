"""RunStore: the accept path, cross-leaf duplicates, kept originals, refusing files it must not touch (not SQLite,
another application's database, a newer treesynth's store) and the schema version with its migration."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_run_e2e import treesynth

from treesynth.errors import ConfigError, RunStateError, TreeSynthError
from treesynth.store import DB_NAME, SCHEMA_VERSION, Candidate, RunStore

IDENTITY = {"task": "t", "depth": 1}

# The layout of every store written before the schema version existed (frozen here: _SCHEMA will move on).
UNVERSIONED_LAYOUT = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE nodes(id TEXT PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE leaf_calls(leaf_id TEXT NOT NULL, call_index INTEGER NOT NULL, ok INTEGER NOT NULL,
    PRIMARY KEY(leaf_id, call_index));
CREATE TABLE candidates(leaf_id TEXT NOT NULL, call_index INTEGER NOT NULL, position INTEGER NOT NULL,
    norm TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'new', reason TEXT,
    PRIMARY KEY(leaf_id, call_index, position));
CREATE TABLE samples(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    leaf_id TEXT NOT NULL, norm TEXT NOT NULL UNIQUE, payload TEXT NOT NULL);
CREATE INDEX samples_leaf ON samples(leaf_id);
CREATE TABLE routes(node_id TEXT NOT NULL, item INTEGER NOT NULL, value TEXT, reason TEXT, PRIMARY KEY(node_id, item));
CREATE TABLE leaf_state(leaf_id TEXT PRIMARY KEY, exhausted_at INTEGER NOT NULL);
CREATE TABLE calls(seq INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT, model TEXT, node_id TEXT,
    ok INTEGER, error TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL, retries INTEGER,
    cached INTEGER);
"""


def cand(text: str, reason: str | None = None, *, sample_id: str | None = None) -> Candidate:
    return text.lower(), {"id": sample_id or f"id-{text}", "text": text}, reason


def texts(store: RunStore, leaf_id: str) -> list[str]:
    return [s["text"] for s in store.recent_samples(leaf_id, 100)]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = RunStore.open(tmp_path / "run", IDENTITY)
    yield opened
    opened.close()


def raw(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(sql, params).fetchall()
    db.close()
    return rows


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(out: Path) -> str:
    """Open ``out``, expect a one-line treesynth error, and return its message."""
    with pytest.raises(RunStateError) as caught:
        RunStore.open(out, IDENTITY)
    message = str(caught.value)
    assert isinstance(caught.value, TreeSynthError) and "\n" not in message and str(out / DB_NAME) in message
    return message


# -- accept path --------------------------------------------------------------------------------------------
def test_a_resumed_leaf_replays_its_rounds_seeing_only_calls_before_the_round(store: RunStore) -> None:
    # round one (calls 0, 1) accepted; round two (calls 2, 3) killed with call 2 stored and 3 in flight
    store.save_leaf_call("leaf", 0, [cand("A"), cand("B")])
    store.save_leaf_call("leaf", 1, [cand("C")])
    assert store.accept("leaf", 6, below=2) == 3
    store.save_leaf_call("leaf", 2, [cand("D"), cand("E")])
    # the resumed session replays round one: call 2's candidates wait for call 3, which is shown round one only
    assert store.accept("leaf", 6, below=0) == 0 and store.recent_samples("leaf", 10, below=0) == []
    assert store.accept("leaf", 6, below=2) == 3
    assert [s["text"] for s in store.recent_samples("leaf", 2, below=2)] == ["B", "C"]
    store.save_leaf_call("leaf", 3, [cand("F")])
    assert store.accept("leaf", 6, below=4) == 6 and texts(store, "leaf") == ["A", "B", "C", "D", "E", "F"]
    assert store.accept("leaf", 6, below=2) == 3  # what calls before 2 hold, whatever came later


def test_accept_takes_calls_in_call_order_skips_rejected_and_stops_at_the_target(store: RunStore) -> None:
    store.save_leaf_call("leaf", 1, [cand("D"), cand("E")])  # finished first, but it is the later call
    store.save_leaf_call("leaf", 0, [cand("A"), cand("B", "is a schema keyword"), cand("C")])
    store.save_leaf_call("leaf", 2, None)  # a failed call: counted as done, no candidates
    assert store.leaf_call_indexes("leaf") == {0, 1, 2}

    assert store.accept("leaf", 3) == 3
    assert texts(store, "leaf") == ["A", "C", "D"]
    assert store.candidate_stats() == {"accepted": 3, "rejected": 1, "new": 1}
    assert store.accept("leaf", 3) == 3  # idempotent at the same target
    store.save_leaf_call("leaf", 0, [cand("Z")])  # a replayed call after a resume: first write wins
    assert store.accept("leaf", 10) == 4
    assert texts(store, "leaf") == ["A", "C", "D", "E"]
    assert [row["text"] for row in store.rejected()] == ["B"]
    assert store.sample_counts() == {"leaf": 4}


def test_a_duplicate_of_another_leafs_sample_is_marked_and_the_leaf_takes_the_next(store: RunStore) -> None:
    store.save_leaf_call("left", 0, [cand("Same problem"), cand("Left only")])
    assert store.accept("left", 2) == 2
    store.save_leaf_call("right", 0, [cand("same PROBLEM", sample_id="r-0"), cand("Right only")])
    assert store.accept("right", 2) == 1  # normalized content is unique across the whole run
    assert texts(store, "right") == ["Right only"]
    assert store.candidate_stats() == {"accepted": 3, "duplicate": 1}
    assert {s["id"] for s in store.samples()} == {"id-Same problem", "id-Left only", "id-Right only"}
    store.save_leaf_call("right", 1, [cand("Right two")])
    assert store.accept("right", 2) == 2  # the duplicate is never retried


def test_originals_are_kept_once_and_block_synthetic_duplicates(store: RunStore) -> None:
    rows = [("orig-1", "leaf", "a problem", {"id": "orig-1", "origin": "original", "text": "A problem"}),
            ("orig-2", "leaf", "a problem", {"id": "orig-2", "origin": "original", "text": "A PROBLEM"}),
            ("orig-3", "other", "b problem", {"id": "orig-3", "origin": "original", "text": "B problem"})]
    assert store.add_originals(rows) == {"orig-2"}  # same normalized content as orig-1
    assert store.add_originals(rows[:1]) == set()  # a resume re-adds kept originals: skipped, not duplicates
    assert store.sample_counts() == {"leaf": 1, "other": 1}
    assert next(s for s in store.samples() if s["id"] == "orig-1")["origin"] == "original"
    store.save_leaf_call("other", 0, [cand("A problem", sample_id="syn-0"), cand("C problem")])
    assert store.accept("other", 3) == 2
    assert texts(store, "other") == ["B problem", "C problem"]


def _store_with_one_sample(tmp_path: Path) -> Path:
    """A closed run store in ``tmp_path / "run"`` holding one accepted sample, ``A``, in leaf ``leaf``."""
    out = tmp_path / "run"
    store = RunStore.open(out, IDENTITY)
    store.save_leaf_call("leaf", 0, [cand("A")])
    store.accept("leaf", 1)
    store.close()
    return out


def test_a_reopened_store_keeps_everything_and_refuses_another_identity(tmp_path: Path) -> None:
    out = _store_with_one_sample(tmp_path)
    again = RunStore.open(out, IDENTITY)
    try:
        assert texts(again, "leaf") == ["A"] and again.leaf_call_indexes("leaf") == {0}
    finally:
        again.close()
    with pytest.raises(ConfigError, match="holds a run with depth 1, not 2; use another --out"):
        RunStore.open(out, {**IDENTITY, "depth": 2})


def test_a_changed_setting_is_named_with_its_old_and_new_value_and_the_flag_that_resumes(tmp_path: Path) -> None:
    identity = {"task": {"description": "poems"}, "tree": {"depth": 2, "width": 4}, "seed": 0}
    RunStore.open(tmp_path, identity).close()
    with pytest.raises(ConfigError) as width:
        RunStore.open(tmp_path, {**identity, "tree": {"depth": 2, "width": 6}})
    assert str(width.value) == (f"--out {tmp_path} holds a run with tree.width 4, not 6; use another --out, or "
                                "--width 4 to resume it")
    with pytest.raises(ConfigError, match=r"different task \(task.description \"poems\", not \"odes\"\)"):
        RunStore.open(tmp_path, {**identity, "task": {"description": "odes"}})
    with pytest.raises(ConfigError, match=r"seed 0, not 3; .* or --seed 0 "):
        RunStore.open(tmp_path, {**identity, "seed": 3})
    RunStore.open(tmp_path, {key: identity[key] for key in ("task", "tree")}).close()  # a dropped key: no longer
    # part of the identity (as the samples target is not), so the run still opens


def test_every_identity_flag_is_the_run_commands_own() -> None:
    from treesynth.cli.options import _KEYS
    from treesynth.identity import SETTING_FLAGS

    flags = {key.removeprefix("synthesis."): "--" + name.replace("_", "-") for name, key in _KEYS.items()}
    assert {key: flags[key] for key in SETTING_FLAGS} == SETTING_FLAGS


# -- files the store must not touch -------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"\x00\x01binary junk", b"samples, not a database\n" * 40, b"SQLite"],
                         ids=["binary", "text", "short"])
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    out = tmp_path / "run"
    out.mkdir()
    db = out / DB_NAME
    db.write_bytes(content)
    before = digest(db)
    assert "is not an SQLite database" in refused(out)
    assert digest(db) == before and sorted(p.name for p in out.iterdir()) == [DB_NAME]


def test_an_empty_store_file_left_by_a_kill_at_creation_becomes_a_new_store(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / DB_NAME).touch()
    RunStore.open(out, IDENTITY).close()
    assert raw(out / DB_NAME, "SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]


def test_a_corrupt_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    db = out / DB_NAME
    db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    before = digest(db)
    assert "is not a usable run store" in refused(out)
    assert digest(db) == before and sorted(p.name for p in out.iterdir()) == [DB_NAME]


@pytest.mark.parametrize(("schema", "named"), [
    ("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES(1, 'ada')", "users"),
    ("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES('theme', 'dark')", "meta"),
    ("CREATE TABLE samples(id INTEGER, label TEXT); INSERT INTO samples VALUES(1, 'cat')", "samples"),
    (UNVERSIONED_LAYOUT + "CREATE TABLE invoices(n INTEGER)", "invoices"),
], ids=["other-tables", "key-value-meta", "same-name-other-columns", "extra-table"])
def test_another_applications_sqlite_database_is_refused_untouched(tmp_path: Path, schema: str, named: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    db = out / DB_NAME
    with sqlite3.connect(db) as conn:
        conn.executescript(schema)
    conn.close()
    before = digest(db)
    message = refused(out)
    assert "another application" in message and named in message and "untouched" in message
    assert digest(db) == before and sorted(p.name for p in out.iterdir()) == [DB_NAME]
    assert raw(db, "PRAGMA journal_mode") == [("delete",)]  # not even switched to WAL


# -- schema version -----------------------------------------------------------------------------------------
def test_a_new_store_records_the_current_schema_version(tmp_path: Path) -> None:
    RunStore.open(tmp_path / "run", IDENTITY).close()
    assert raw(tmp_path / "run" / DB_NAME, "SELECT value FROM meta WHERE key='schema_version'") == [
        (str(SCHEMA_VERSION),)]


def _newer_store(tmp_path: Path) -> Path:
    out = _store_with_one_sample(tmp_path)
    raw(out / DB_NAME, "UPDATE meta SET value=? WHERE key='schema_version'", str(SCHEMA_VERSION + 1))
    return out


def test_a_store_from_a_newer_treesynth_is_refused_with_upgrade_advice(tmp_path: Path) -> None:
    out = _newer_store(tmp_path)
    before = digest(out / DB_NAME)
    message = refused(out)
    assert "newer treesynth" in message and "upgrade treesynth" in message and f"schema {SCHEMA_VERSION + 1}" in message
    assert digest(out / DB_NAME) == before
    assert raw(out / DB_NAME, "SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION + 1),)]


def test_the_cli_reports_a_newer_store_in_one_line(tmp_path: Path) -> None:
    out = _newer_store(tmp_path)
    done = treesynth("run", "poems", "--model", "test/fake", "-n", "2", "-q", "--out", str(out))
    assert done.returncode == 2, done.stderr  # a usage error: the fix is the user's (upgrade, or another --out)
    assert done.stderr.strip().count("\n") == 0 and "upgrade treesynth" in done.stderr, done.stderr


def test_an_unreadable_schema_version_is_refused(tmp_path: Path) -> None:
    out = _newer_store(tmp_path)
    raw(out / DB_NAME, "UPDATE meta SET value='\"two\"' WHERE key='schema_version'")
    assert "unreadable schema_version" in refused(out)


def test_an_unversioned_store_is_stamped_and_keeps_its_data(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    db = out / DB_NAME
    with sqlite3.connect(db) as conn:
        conn.executescript(UNVERSIONED_LAYOUT)
        conn.execute("INSERT INTO meta VALUES('identity', ?)", ('{"task": "t", "depth": 1}',))
        conn.execute("INSERT INTO nodes VALUES('root', '{\"criterion\": \"topic\"}')")
        conn.execute("INSERT INTO leaf_calls VALUES('leaf', 0, 1)")
        conn.executemany("INSERT INTO candidates VALUES('leaf', 0, ?, ?, ?, ?, ?)", [
            (0, "a", '{"id": "s-a", "text": "A"}', "accepted", None),
            (1, "b", '{"id": "s-b", "text": "B"}', "rejected", "too short"),
            (2, "c", '{"id": "s-c", "text": "C"}', "new", None)])
        conn.execute("INSERT INTO samples(id, leaf_id, norm, payload) VALUES('s-a', 'leaf', 'a', "
                     "'{\"id\": \"s-a\", \"text\": \"A\"}')")
    conn.close()
    tables = {t: raw(db, f"SELECT * FROM {t}") for t in ("nodes", "leaf_calls", "candidates", "samples")}

    store = RunStore.open(out, IDENTITY)
    try:
        assert store.get_meta("schema_version") == SCHEMA_VERSION
        assert store.get_node("root") == {"criterion": "topic"}
        assert store.rejection_stats() == {"too short": 1}
        assert store.accept("leaf", 2) == 2  # the run resumes where it stopped
        assert texts(store, "leaf") == ["A", "C"]
    finally:
        store.close()
    assert raw(db, "SELECT * FROM nodes") == tables["nodes"] and raw(db, "SELECT * FROM leaf_calls") == tables[
        "leaf_calls"]
    assert raw(db, "SELECT * FROM samples")[0] == tables["samples"][0]
    assert raw(db, "SELECT value FROM meta WHERE key='identity'") == [('{"task": "t", "depth": 1}',)]
