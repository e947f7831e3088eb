"""Reading the files a user hands treesynth (YAML documents and JSONL records), and writing files atomically.

Every failure is a one-line :class:`~treesynth.errors.ConfigError` (:class:`~treesynth.errors.DataError`
for JSONL) that names the file and, where there is one, the line (``<file>:<line>: ...``).
"""

from __future__ import annotations

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
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{kind} {path} does not exist{missing_hint}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{kind} {path}{where}: malformed YAML{at}; fix the syntax") from None


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
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield lineno, line
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from exc
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
