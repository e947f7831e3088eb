"""The shared file readers: one-line errors naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from treesynth.errors import ConfigError, DataError, first_validation_error
from treesynth.io import iter_jsonl, read_yaml, read_yaml_mapping


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^config file {bad}:3: malformed YAML at line 3; fix the syntax$"):
        read_yaml(bad, "config file")
    with pytest.raises(ConfigError, match="does not exist; pass a sentence"):
        read_yaml(tmp_path / "nope.yaml", "task file", missing_hint="; pass a sentence")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings"):
        read_yaml_mapping(listed, "config file", "settings")
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml_mapping(tmp_path / "empty.yaml", "config file", "settings") == {}


def test_jsonl_errors_name_the_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(iter_jsonl(data)) == [(1, {"a": 1}), (3, {"a": 2})]
    data.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: expected a JSON object, got an array"):
        list(iter_jsonl(data))
    data.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: not valid JSON"):
        list(iter_jsonl(data))
    data.write_text("\n")
    with pytest.raises(DataError, match="empty file"):
        list(iter_jsonl(data))
    assert list(iter_jsonl(data, allow_empty=True)) == []


def test_first_validation_error_is_one_line() -> None:
    class Model(BaseModel):
        depth: int

        @field_validator("depth")
        @classmethod
        def _positive(cls, value: int) -> int:
            if value < 1:
                raise ValueError("depth must be at least 1")
            return value

    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"depth": 0})
    assert first_validation_error(caught.value) == "depth: depth must be at least 1"
    assert first_validation_error(caught.value, with_key=False) == "depth must be at least 1"
    with pytest.raises(ValidationError) as root:
        Model.model_validate([1])
    assert first_validation_error(root.value).startswith("(root): ")


def test_yaml_refuses_duplicate_keys_and_names_tabs(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("tree:\n  depth: 2\n  width: 3\n  depth: 4\n")
    with pytest.raises(ConfigError, match=rf"^config file {dup}:4: duplicate key 'depth' \(first at line 2\); "
                                          "keep one of them$"):
        read_yaml(dup, "config file")
    inline = tmp_path / "inline.yaml"
    inline.write_text("a: {x: 1, x: 2}\n")
    with pytest.raises(ConfigError, match="duplicate key 'x'"):
        read_yaml(inline, "config file")
    same_name_elsewhere = tmp_path / "ok.yaml"
    same_name_elsewhere.write_text("a: {x: 1}\nb: {x: 2}\nc: [{x: 1}, {x: 2}]\n")  # one key per mapping: fine
    assert read_yaml(same_name_elsewhere, "config file")["c"] == [{"x": 1}, {"x": 2}]
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("tree:\n\tdepth: 2\n")
    with pytest.raises(ConfigError, match=r":2: malformed YAML at line 2; indent with spaces, not tabs$"):
        read_yaml(tabs, "config file")
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfdescription: poems\n")
    assert read_yaml(bom, "task file") == {"description": "poems"}


def test_jsonl_takes_a_bom_and_crlf_and_names_the_line_of_bad_bytes(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [obj["text"] for _, obj in iter_jsonl(data)] == ["a", "b"]
    data.write_bytes(b'{"text": "a"}\n\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"^{data}:3: not UTF-8 text \(.* at byte 14\); re-encode the file"):
        list(iter_jsonl(data))
    data.write_bytes(b'{"text": "a"}\n\xef\xbb\xbf{"text": "b"}\n')  # a mark inside the file is content
    with pytest.raises(DataError, match=rf"^{data}:2: not valid JSON"):
        list(iter_jsonl(data))
