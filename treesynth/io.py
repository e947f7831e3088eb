"""Reading the files a user hands treesynth (YAML documents, JSONL records), checking output directories, and
writing files atomically.

Every failure is a one-line :class:`~treesynth.errors.ConfigError` (:class:`~treesynth.errors.DataError`
for JSONL) that names the file and, where there is one, the line (``<file>:<line>: ...``).
"""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from treesynth.errors import ConfigError, DataError


def read_yaml(path: Path, kind: str, *, missing_hint: str = "") -> Any:
    """The document in the YAML (or JSON) file ``path`` (``None`` for an empty file).

    Args:
        path: The file.
        kind: What the file is, for the messages (``"config file"``, ``"task file"``...).
        missing_hint: Appended to the message for a missing file (e.g. ``"; pass a sentence"``).

    Raises:
        ConfigError: the file does not exist, or is not valid YAML (the message names its line).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{kind} {path} does not exist{missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{kind} {path} is a directory; pass a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{kind} {path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKeyError as exc:
        raise ConfigError(f"{kind} {path}:{exc.line}: duplicate key {exc.key!r} (first at line {exc.first}); "
                          "keep one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        at = f" at line {mark.line + 1}" if mark is not None else ""
        tab = "'\\t'" in str(getattr(exc, "problem", ""))  # PyYAML: found character '\t'
        fix = "indent with spaces, not tabs" if tab else "fix the syntax"
        raise ConfigError(f"{kind} {path}{where}: malformed YAML{at}; {fix}") from None


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping repeats a key (PyYAML would silently keep the last value)."""

    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: the base loader names it
                break
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path, kind: str, holds: str) -> dict[str, Any]:
    """The mapping in the YAML (or JSON) file ``path`` (empty for an empty file); see :func:`read_yaml`.

    Raises:
        ConfigError: as :func:`read_yaml`, or the file does not hold a mapping (of ``holds``).
    """
    raw = read_yaml(path, kind) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind} {path}: expected a mapping of {holds}")
    return raw


def type_name(value: Any) -> str:
    """How a JSON value is named in messages: ``an object``, ``an array``, ``a string``..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def json_record(path: Path, lineno: int, line: str) -> dict[str, Any]:
    """Line ``lineno`` of ``path`` parsed as a JSON object.

    Raises:
        DataError: the line is not valid JSON, or not an object.
    """
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type_name(obj)}")
    return obj


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` for each non-blank line of the text file ``path``, streaming.

    Raises:
        DataError: the file cannot be read or is not UTF-8 text.
    """
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)  # a byte-order mark is no content
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start + 1}); "
                                    "re-encode the file as UTF-8 (e.g. iconv -t UTF-8)") from None
                if line.strip():
                    yield lineno, line
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def iter_jsonl(path: Path, *, allow_empty: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of the JSONL file ``path``, streaming.

    Raises:
        DataError: unreadable file, invalid UTF-8 or JSON, a line that is not a JSON object, or (unless
            ``allow_empty``) no records.
    """
    seen = False
    for lineno, line in iter_lines(path):
        seen = True
        yield lineno, json_record(path, lineno, line)
    if not seen and not allow_empty:
        raise DataError(f"{path}: empty file, no JSON records")


def ensure_writable_dir(out: Path, flag: str = "--out") -> None:
    """Create the output directory ``out`` if needed and check a file can be written in it.

    Raises:
        ConfigError: ``out`` is a file, or cannot be created or written (read-only, no permission...).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; choose a directory path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"{flag} {out} is not writable ({reason}); choose a writable directory") from None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and an atomic rename."""
    write_lines_atomic(path, [text])


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Stream ``rows`` as JSON lines into ``path`` atomically; return the number of lines."""
    return write_lines_atomic(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_lines_atomic(path: Path, chunks: Iterable[str]) -> int:
    """Write ``chunks`` to a temporary sibling of ``path``, fsync, then rename it over ``path``.

    Readers see the old file or the new one, never a torn one. Returns the number of chunks written.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(chunk)
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; exports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return count
