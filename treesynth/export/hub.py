"""Writing configs in the Hugging Face layout, and pushing the export directory to the Hub.

Per config: ``data/<config>/train-00000-of-00001.parquet`` (what the card's ``configs`` point at),
``jsonl/<config>.jsonl`` and ``hf/<config>/`` (``datasets.save_to_disk``, a ``DatasetDict`` with a ``train``
split). The token is passed to the Hub client from the environment and never written anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treesynth.errors import ConfigError
from treesynth.store import write_jsonl_atomic

EXPORT_HINT = "pip install 'treesynth[export]'"
TOKEN_VARIABLE = "HF_TOKEN"
PARQUET_NAME = "train-00000-of-00001.parquet"


@dataclass(frozen=True)
class WrittenConfig:
    """One config as written: its name, columns, rows and data file pattern (relative to the export dir)."""

    name: str
    columns: list[str]
    rows: int
    data_files: str


def require_datasets() -> None:
    """Raise a one-line :class:`ConfigError` naming the extra when ``datasets``/``pyarrow`` are missing."""
    try:
        import datasets  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(f"export needs the datasets and pyarrow packages; {EXPORT_HINT}") from None


def uniform(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the same columns (missing ones ``None``); a column mixing types becomes JSON text.

    Arrow needs one type per column: balanced records may disagree (an id that is a number here, text there).
    """
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = [{name: row.get(name) for name in columns} for row in rows]
    for name in columns:
        kinds = {_kind(row[name]) for row in out if row[name] is not None}
        if len(kinds) > 1:
            for row in out:
                value = row[name]
                if value is not None and not isinstance(value, str):
                    row[name] = json.dumps(value, ensure_ascii=False)
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__  # objects with different keys are one struct column; Arrow fills the gaps


def _nested_as_text(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects and arrays as JSON text: the fallback when Arrow finds no common type inside them."""
    return [{k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for k, v in row.items()}
            for row in rows]


def write_config(out: Path, name: str, rows: Sequence[Mapping[str, Any]]) -> WrittenConfig:
    """Write one config as parquet, JSONL and a ``save_to_disk`` directory; return what was written."""
    import datasets
    import pyarrow as pa

    table = uniform(rows)
    try:
        arrow = pa.Table.from_pylist(table)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = _nested_as_text(table)
        arrow = pa.Table.from_pylist(table)
    dataset = datasets.Dataset(arrow)
    parquet = out / "data" / name / PARQUET_NAME
    parquet.parent.mkdir(parents=True, exist_ok=True)
    bars = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a bar per file and config drowns the one-line result
    try:
        dataset.to_parquet(str(parquet))
        datasets.DatasetDict({"train": dataset}).save_to_disk(str(out / "hf" / name))
    finally:
        if bars:
            datasets.enable_progress_bars()
    (out / "jsonl").mkdir(exist_ok=True)
    write_jsonl_atomic(out / "jsonl" / f"{name}.jsonl", table)
    return WrittenConfig(name=name, columns=list(dataset.column_names), rows=len(dataset),
                         data_files=f"data/{name}/train-*")


def hub_token(environ: Mapping[str, str]) -> str:
    """The Hugging Face token from the environment.

    Raises:
        ConfigError: none is set (the message names the variable).
    """
    token = environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise ConfigError(f"--push needs a Hugging Face token in the environment; set {TOKEN_VARIABLE} "
                          "(a write token from https://huggingface.co/settings/tokens)")
    return token


def push(out: Path, repo: str, token: str, *, private: bool = True) -> str:
    """Create the dataset repo (private by default) and upload the export directory but ``hf/``; return its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=str(out), ignore_patterns=["hf/**"],
                      commit_message="Upload dataset exported by treesynth")
    return f"https://huggingface.co/datasets/{repo}"
