"""Loading JSONL files and run directories; bad inputs give one-line errors with file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from treesynth.errors import ConfigError, DataError
from treesynth.metrics.data import TextSelector, is_run_dir, iter_records, load_dataset


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def one_line_error(exc: pytest.ExceptionInfo[DataError], where: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(where), message
    return message


def test_data_error_is_a_config_error() -> None:
    assert issubclass(DataError, ConfigError)


def test_default_text_field(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "n": 1}, {"text": "b", "other": "x"}])
    ds = load_dataset(f)
    assert ds.texts == ["a", "b"] and ds.kind == "jsonl" and ds.name == "d" and ds.field == "text"
    assert not ds.has_structure


def test_single_string_field_is_used(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p1", "score": 2}, {"prompt": "p2", "score": 3}])
    ds = load_dataset(f)
    assert ds.texts == ["p1", "p2"] and ds.field == "prompt"


def test_several_string_fields_need_field(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as exc:
        load_dataset(f)
    assert "pass --field" in one_line_error(exc, f"{f}:1:")
    assert load_dataset(f, TextSelector("answer")).texts == ["a"]


def test_template_over_fields_and_nested_fields(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "d.jsonl",
        [{"question": "q1", "answer": 4}, {"fields": {"question": "q2", "answer": "five"}}],
    )
    assert load_dataset(f, TextSelector("Q: {question} A: {answer}")).texts == ["Q: q1 A: 4", "Q: q2 A: five"]


def test_structured_samples_default_to_joined_fields(tmp_path: Path) -> None:
    row = {"id": "1", "leaf_id": "L", "path": [], "fields": {"question": "q", "answer": "a"}}
    ds = load_dataset(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert ds.texts == ["q\na"] and ds.has_structure and ds.records[0].branch == "root"


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '"text"'])
def test_bad_lines_name_the_line(tmp_path: Path, bad: str) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, "", bad])
    with pytest.raises(DataError) as exc:
        load_dataset(f)
    one_line_error(exc, f"{f}:3:")


def test_missing_field_names_the_line(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b"}, {"body": "c"}])
    with pytest.raises(DataError) as exc:
        load_dataset(f)
    assert "missing field 'text'" in one_line_error(exc, f"{f}:3:")
    with pytest.raises(DataError) as exc:
        load_dataset(f, TextSelector("{text} {extra}"))
    assert "'extra'" in one_line_error(exc, f"{f}:1:")


def test_mixed_types_name_the_line(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": ["b"]}])
    with pytest.raises(DataError) as exc:
        load_dataset(f)
    assert "an array, expected a string" in one_line_error(exc, f"{f}:2:")
    f = write_jsonl(tmp_path / "e.jsonl", [{"text": "a", "leaf_id": "x", "path": []}, {"text": "b"}])
    with pytest.raises(DataError) as exc:
        load_dataset(f)
    assert "mixed records" in one_line_error(exc, f"{f}:2:")
    f = write_jsonl(tmp_path / "g.jsonl", [{"text": "a", "leaf_id": 3, "path": []}])
    with pytest.raises(DataError) as exc:
        load_dataset(f)
    one_line_error(exc, f"{f}:1:")
    f = write_jsonl(tmp_path / "h.jsonl", [{"text": "a", "leaf_id": "x", "path": "easy"}])
    with pytest.raises(DataError) as exc:
        load_dataset(f)
    one_line_error(exc, f"{f}:1:")


def test_empty_files(tmp_path: Path) -> None:
    for name, content in (("empty.jsonl", ""), ("blank.jsonl", "\n  \n")):
        f = tmp_path / name
        f.write_text(content)
        with pytest.raises(DataError) as exc:
            load_dataset(f)
        assert "empty" in one_line_error(exc, str(f))


def test_missing_paths_and_plain_dirs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="not a run directory"):
        load_dataset(tmp_path)


def test_bad_template_is_rejected() -> None:
    with pytest.raises(DataError, match="malformed"):
        TextSelector("{question")
    with pytest.raises(DataError, match="named fields"):
        TextSelector("{} and {}")


def test_run_dir_loading(run_dir: Path) -> None:
    assert is_run_dir(run_dir)
    ds = load_dataset(run_dir)
    assert ds.kind == "run" and ds.name == run_dir.name
    assert ds.tree is not None and ds.run is not None
    assert ds.has_structure
    assert {r.branch for r in ds.records} == {"easy", "hard"}
    assert ds.quota() == {"a1": 6.0, "a2": 6.0, "b1": 6.0, "b2": 6.0}


def test_run_dir_with_broken_tree(run_dir: Path) -> None:
    (run_dir / "tree.json").write_text('{"task": {},\n "root": oops}')
    with pytest.raises(DataError) as exc:
        load_dataset(run_dir)
    one_line_error(exc, f"{run_dir / 'tree.json'}:2:")


def test_records_stream_lazily(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, "{broken"])
    records = iter_records(f)
    assert next(records).text == "a"
    with pytest.raises(DataError):
        next(records)
