"""``treesynth export``: a run directory as a Hugging Face dataset (parquet, JSONL, save_to_disk) with a card."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from treesynth.cli._common import cli_command


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export", no_args_is_help=True)(export)


@cli_command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run, balance or bench-cell directory (never modified).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Export directory (README.md card, data/, jsonl/, hf/).")],
    fmt: Annotated[list[str] | None, typer.Option(
        "--format", "-f", help="raw | messages | prompt-completion | sharegpt | alpaca; repeatable. "
        "Default: all, one config each.")] = None,
    field_map: Annotated[str | None, typer.Option(
        "--map", help="Where fields go: FIELD=instruction|input|output|system, comma-separated (e.g. "
        "question=instruction,answer=output). Default: first field instruction, last output; a single field "
        "(text) is the output and the task description the instruction.")] = None,
    clean: Annotated[str | None, typer.Option(
        help="Format of the clean training config <format>-clean (no provenance columns; the default config). "
        "Default: messages.")] = None,
    embedder: Annotated[str, typer.Option(
        "--embedder", "-e", help="Embedder of the card's diversity metrics: lexical | minilm | st:<path> | "
        "none.")] = "lexical",
    task_category: Annotated[list[str] | None, typer.Option(
        "--task-category",
        help="Hub task_categories for the card (e.g. text-generation); repeatable. Default: none.")] = None,
    license_id: Annotated[str, typer.Option(
        "--license", help="License id for the card (default: a placeholder to choose).")] = "other",
    push: Annotated[str | None, typer.Option(
        "--push", help="Also upload to this Hub dataset repo (OWNER/NAME); needs HF_TOKEN in the "
        "environment. Default: no upload.")] = None,
    public: Annotated[bool, typer.Option("--public", help="With --push: a public repo (default: private).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier export in --out.")] = False,
) -> None:
    """Export RUN_DIR's samples in training formats, with provenance columns and a dataset card."""
    from treesynth.export import CardMeta, ExportOptions, export_run

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # as eval: no model-loading bars
    options = ExportOptions(formats=tuple(fmt or ()), field_map=field_map, clean=clean,
                            embedder=None if embedder == "none" else embedder,
                            card=CardMeta(license=license_id, task_categories=tuple(task_category or ())),
                            push=push, public=public, force=force)
    result = export_run(run_dir, out, options, os.environ)
    rows = result.configs[0].rows if result.configs else 0
    typer.echo(f"exported {rows} samples in {len(result.configs)} configs ({', '.join(c.name for c in result.configs)})"
               f" -> {result.out}" + (f"; pushed to {result.url}" if result.url else ""))
