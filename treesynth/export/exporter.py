"""``export_run``: a run directory into a Hugging Face dataset directory (and, optionally, onto the Hub).

The export directory holds ``README.md`` (the dataset card), ``data/<config>/train-*.parquet``,
``jsonl/<config>.jsonl``, ``hf/<config>/`` (``save_to_disk``), ``tree.json``, ``treesynth_run.json`` (the
run's ``run.json``) and the files the reproduce command reads. One config per format, each with the
``treesynth_*`` provenance columns, plus ``<format>-clean`` without them (the default config).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treesynth.errors import ConfigError
from treesynth.export.card import CardInputs, CardMeta, render_card
from treesynth.export.formats import FORMATS, layout, parse_formats, parse_map, to_parts
from treesynth.export.hub import WrittenConfig, hub_token, push, require_datasets, write_config
from treesynth.export.reproduce import CONFIG_FILE, SWEEP_FILE, TASK_FILE, reproduction
from treesynth.export.source import PREFIX, RunSource, load_source
from treesynth.store import write_atomic

CARD_FILE = "README.md"
_OWNED = ("data", "jsonl", "hf")
_OWNED_FILES = (CARD_FILE, "tree.json", "treesynth_run.json", CONFIG_FILE, TASK_FILE, SWEEP_FILE)


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        formats: Formats to write (default: all of :data:`~treesynth.export.formats.FORMATS`).
        field_map: ``field=target,...`` (see :mod:`treesynth.export.formats`); ``None``: the default mapping.
        clean: The format of the clean training config (default: ``messages`` when written, else the first).
        embedder: Embedder of the card's diversity metrics (``lexical``, ``minilm``, ...); ``None`` skips them.
        card: License placeholder, task categories, Hub repo.
        push: Upload to this Hub dataset repo (needs ``HF_TOKEN``).
        public: Make a pushed repo public (private by default).
        force: Write into a non-empty ``out`` (replacing what an earlier export wrote).
    """

    formats: tuple[str, ...] = ()
    field_map: str | None = None
    clean: str | None = None
    embedder: str | None = "lexical"
    card: CardMeta = field(default_factory=CardMeta)
    push: str | None = None
    public: bool = False
    force: bool = False


@dataclass(frozen=True)
class ExportResult:
    """What was written: the directory, its configs, the default config and the Hub URL if pushed."""

    out: Path
    configs: list[WrittenConfig]
    default: str
    url: str | None = None


def _check_out(out: Path, run_dir: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; choose another --out")
    if out.resolve() == run_dir.resolve():
        raise ConfigError("--out is the run directory itself; choose a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} is not empty; pass --force to replace an earlier export or choose --out")


def build_configs(source: RunSource, formats: list[str], mapping: Mapping[str, str], clean: str
                  ) -> dict[str, list[dict[str, Any]]]:
    """Rows of every config: ``<format>`` with provenance columns, and ``<clean>-clean`` without them."""
    task = str(source.task.get("description", ""))
    configs: dict[str, list[dict[str, Any]]] = {}
    for fmt in formats:
        if fmt == "raw":
            configs[fmt] = [{**row.content, **row.provenance} for row in source.rows]
        else:
            configs[fmt] = [{**layout(fmt, to_parts(row.content, mapping, task)), **row.provenance}
                            for row in source.rows]
    strip = {name for row in source.rows[:1] for name in row.provenance}
    configs[f"{clean}-clean"] = [{k: v for k, v in row.items() if k not in strip} for row in configs[clean]]
    return configs


def _diversity(source: RunSource, spec: str | None) -> dict[str, Any] | None:
    """``treesynth eval``'s metrics of the exported samples with ``spec``'s embedder.

    A run directory is loaded exactly as ``eval`` loads it; a balance run's rows are scored on their routed
    fields (joined by newlines), since originals and synthesized rows may be shaped differently on disk.
    """
    if spec is None:
        return None
    from treesynth.metrics.data import LoadedDataset, Record, load_dataset
    from treesynth.metrics.embedders import make_embedder
    from treesynth.metrics.report import evaluate
    from treesynth.metrics.structure import branch_of_path

    embedder = make_embedder(spec)
    if source.kind == "balance":
        fields = source.content_fields
        records = [Record(text="\n".join(str(row.content.get(f) or "") for f in fields), line=i + 1,
                          leaf_id=row.provenance.get(PREFIX + "leaf_id"), branch=branch_of_path(row.steps))
                   for i, row in enumerate(source.rows)]
        data = LoadedDataset(name=source.path.name, source=source.samples_file, kind="run",
                             field=" + ".join(fields), records=records, tree=source.tree, run=source.run)
    else:
        data = load_dataset(source.path)
    report = evaluate([data], embedder).to_dict()
    return {"embedder": report["embedder"], **report["datasets"][0]}


def _meta(options: ExportOptions, out: Path) -> CardMeta:
    """The card's metadata; the load snippet names the Hub repo, else the export directory."""
    return dataclasses.replace(options.card, repo=options.card.repo or options.push or str(out))


def export_run(run_dir: Path, out: Path, options: ExportOptions, environ: Mapping[str, str]) -> ExportResult:
    """Export ``run_dir`` into ``out``; push to the Hub when ``options.push`` (token from ``environ``).

    Raises:
        ConfigError: not a run directory, an unknown format, a bad ``--map``, a non-empty ``out`` without
            ``force``, no token for ``--push``, or ``datasets`` not installed (each one line naming the fix).
    """
    formats = parse_formats(options.formats)
    clean = options.clean or ("messages" if "messages" in formats else formats[0])
    if clean not in FORMATS:
        raise ConfigError(f"unknown --clean format {clean!r}; use one of {', '.join(FORMATS)}")
    if clean not in formats:
        formats = parse_formats([*formats, clean])
    token = hub_token(environ) if options.push else None
    source = load_source(run_dir)
    if not source.rows:
        raise ConfigError(f"{source.samples_file} holds no samples; finish the run first (re-run its command)")
    available = list(dict.fromkeys(k for row in source.rows for k in row.content))
    mapping = parse_map(options.field_map, [f for f in source.content_fields if f in available] or available,
                        available)
    _check_out(out, run_dir, options.force)
    require_datasets()
    diversity = _diversity(source, options.embedder)
    for name in _OWNED:  # --force: an earlier export's configs and files go, nothing else in --out
        shutil.rmtree(out / name, ignore_errors=True)
    for name in _OWNED_FILES:
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    tables = build_configs(source, formats, mapping, clean)
    written = [write_config(out, name, rows) for name, rows in tables.items()]
    default = f"{clean}-clean"
    recipe = reproduction(source)
    for name, text in recipe.files.items():
        write_atomic(out / name, text)
    write_atomic(out / "treesynth_run.json", json.dumps(source.run, indent=2, ensure_ascii=False))
    if source.tree is not None:
        write_atomic(out / "tree.json", json.dumps(source.tree, indent=2, ensure_ascii=False))
    card = render_card(source, CardInputs(configs=written, default=default,
                                          content_rows=[row.content for row in source.rows], diversity=diversity,
                                          reproduction=recipe, meta=_meta(options, out)))
    write_atomic(out / CARD_FILE, card)
    url = push(out, options.push, token, private=not options.public) if options.push and token else None
    return ExportResult(out=out, configs=written, default=default, url=url)
