"""``treesynth eval DATA...``: diversity metrics, ``report.md`` and plots for datasets and run directories."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from treesynth.cli._common import cli_command
from treesynth.errors import ConfigError
from treesynth.io import ensure_writable_dir

if TYPE_CHECKING:
    from rich.console import Console

    from treesynth.metrics.data import LoadedDataset
    from treesynth.metrics.embedders import Embedder
    from treesynth.metrics.report import EvalOptions, EvalResult

PROJECTIONS = ("pca", "tsne", "auto")
FITS = ("dataset", "joint")
DataArg = Annotated[
    list[Path],
    typer.Argument(
        help="JSONL files and/or run directories (holding samples.jsonl); several are compared side by side."
    ),
]
FieldOpt = Annotated[
    str | None,
    typer.Option("--field", "-f", help='Text field, or a template over fields such as "{question} {answer}". '
                                    r"\[default: 'text', else a record's 'fields', else its one string field]"),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output folder. Default: <first input>/eval for a run directory, else ./eval."),
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        "--embedder",
        "-e",
        help="minilm | lexical | st:<model path> | litellm:<model>. Default: minilm if installed, else lexical.",
    ),
]
FitOpt = Annotated[
    str,
    typer.Option(
        "--embedder-fit",
        help="What the lexical embedder's IDF is fitted on: dataset (each input alone, so its scores do not depend "
        "on the other inputs) | joint (all inputs together, one space for side-by-side comparison; said in the "
        "report and metrics.json).",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into an existing non-empty output folder.")]
ThresholdOpt = Annotated[
    float, typer.Option("--dup-threshold", help="Cosine similarity at which two samples are near-duplicates.")
]
NearDupOpt = Annotated[float, typer.Option(
    "--near-dup", help="Jaccard similarity (MinHash over word 2-grams, the rule of run's near-duplicate removal) "
                       "at which two samples count as near-duplicates.")]
ProjectionOpt = Annotated[
    str,
    typer.Option(
        "--projection",
        help="2-D projection: pca (seconds) | tsne (scikit-learn, slow: at most 1000 points each) | auto (t-SNE "
        "if scikit-learn is installed, else PCA).",
    ),
]
PointsOpt = Annotated[int, typer.Option("--max-plot-points", help="Points per dataset in projection plots.")]
NoPlotsOpt = Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Embedding cache folder. Default: <out>/cache.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", min=1, help="Texts per embedding call. "
                                                r"\[default: the embedder's own]")]


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval", help="Score the diversity of datasets: metrics.json, report.md and PNG plots.")(eval_command)


def _notice(console: Console, message: str) -> None:
    """Print a plain-text notice (no rich markup: install hints contain ``[extras]``)."""
    console.print(f"notice: {message}", markup=False, highlight=False, soft_wrap=True)


def default_out_dir(inputs: list[Path]) -> Path:
    """``<first input>/eval`` when the first input is a run directory, else ``./eval``."""
    from treesynth.metrics.data import is_run_dir

    return inputs[0] / "eval" if inputs and is_run_dir(inputs[0]) else Path("eval")


def _check_options(threshold: float, projection: str, max_points: int, fit: str = "dataset") -> None:
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--dup-threshold must be in (0, 1], got {threshold}")
    if fit not in FITS:
        raise ConfigError(f"--embedder-fit must be one of {', '.join(FITS)}, got {fit!r}")
    if projection not in PROJECTIONS:
        raise ConfigError(f"--projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}")
    if max_points < 2:
        raise ConfigError(f"--max-plot-points must be ≥ 2, got {max_points}")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"output folder {out} is not empty; pass --force to overwrite or choose --out")


def _load_all(inputs: list[Path], field: str | None) -> list[LoadedDataset]:
    from treesynth.metrics.data import TextSelector, load_dataset

    selector = TextSelector(field) if field else None
    datasets = [load_dataset(path, selector) for path in inputs]
    seen: dict[str, int] = {}
    for d in datasets:
        seen[d.name] = seen.get(d.name, 0) + 1
        if seen[d.name] > 1:
            d.name = f"{d.name}#{seen[d.name]}"
    return datasets


def _make_embedder(spec: str | None, batch_size: int | None, console: Console) -> Embedder:
    from treesynth.metrics.embedders import EMBED_HINT, default_embedder_spec, make_embedder

    if spec is None:
        spec = default_embedder_spec()
        if spec == "lexical":
            _notice(console, f"minilm is not installed ({EMBED_HINT}); using the lexical embedder")
    return make_embedder(spec, batch_size=batch_size)


def _run_eval(
    datasets: list[LoadedDataset], embedder: Embedder, cache_dir: Path | None, options: EvalOptions, console: Console
) -> EvalResult:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from treesynth.metrics.embedders import EmbeddingCache
    from treesynth.metrics.report import evaluate

    cache_path = cache_dir / EmbeddingCache.file_name(embedder.name) if cache_dir else None
    cache = EmbeddingCache.load(cache_path, embedder.name) if cache_path else None
    columns = (TextColumn("embedding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                label = name if total else f"{name} (all cached)"
                tasks[name] = bar.add_task(escape(label), total=max(total, 1), completed=0 if total else 1)
            if total:
                bar.update(tasks[name], completed=done, total=total)

        result = evaluate(datasets, embedder, options=options, cache=cache, progress=progress)
    if cache is not None and cache_path is not None:
        cache.save(cache_path)
    return result


def _plots(result: EvalResult, out: Path, projection: str, max_points: int, console: Console) -> dict[str, str]:
    from treesynth.metrics.plots import METRICS_HINT, PlotOptions, plotting_available, write_plots

    if not plotting_available():
        _notice(console, f"plots skipped, matplotlib is not installed ({METRICS_HINT})")
        return {}
    options = PlotOptions(method=projection, max_points=max_points)  # type: ignore[arg-type]
    if not console.is_terminal:
        return write_plots(result, out, options, progress=functools.partial(_plain_step, console))
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("plotting {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=escape(label), completed=done, total=max(total, 1))

        return write_plots(result, out, options, progress=progress)


def _plain_step(console: Console, label: str, done: int, total: int) -> None:
    """One line per plot when stderr is not a terminal (logs, CI), so a slow step shows what it is doing."""
    if done < total:
        console.print(f"plotting {done + 1}/{total}: {label}", markup=False, highlight=False, soft_wrap=True)


def _summary(result: EvalResult, files: list[Path], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    from treesynth.metrics.report import FIT_STATEMENTS, HEADLINE

    console.print(
        f"embedder: {result.embedder}, {FIT_STATEMENTS[result.embedder_fit]}", soft_wrap=True, highlight=False,
        markup=False,
    )
    table = Table(title="Diversity")
    table.add_column("metric")
    table.add_column("better")
    for r in result.results:
        table.add_column(escape(r.dataset.name), justify="right")
    table.add_row("samples", "", *[str(r.metrics["samples"]) for r in result.results])
    for info in HEADLINE:
        values = [(r.metrics.get(info.section) or {}).get(info.key) for r in result.results]
        if any(v is not None for v in values):
            table.add_row(info.label, info.better, *["–" if v is None else f"{v:.4f}" for v in values])
    console.print(table)
    for path in files:
        console.print(f"wrote {path}", soft_wrap=True, highlight=False, markup=False)


@dataclass(frozen=True)
class EvalFlags:
    """Every ``eval`` option: which text, where the outputs go, the embedder, the duplicate threshold, the plots."""

    field: FieldOpt = None
    out: OutOpt = None
    embedder: EmbedderOpt = None
    embedder_fit: FitOpt = "dataset"
    force: ForceOpt = False
    dup_threshold: ThresholdOpt = 0.95
    near_dup: NearDupOpt = 0.8
    projection: ProjectionOpt = "pca"
    max_plot_points: PointsOpt = 2000
    no_plots: NoPlotsOpt = False
    cache_dir: CacheOpt = None
    no_cache: NoCacheOpt = False
    batch_size: BatchOpt = None


@cli_command()
def eval_command(data: DataArg, flags: EvalFlags) -> None:
    """Score the diversity of DATA (JSONL files or run directories) into --out."""
    from rich.console import Console

    from treesynth.metrics.report import EvalOptions, write_outputs

    # The command shows its own progress bar; keep Hugging Face's loading bars out of the terminal.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    console, err_console = Console(), Console(stderr=True)
    _check_options(flags.dup_threshold, flags.projection, flags.max_plot_points, flags.embedder_fit)
    if not 0.0 < flags.near_dup <= 1.0:
        raise ConfigError(f"--near-dup must be in (0, 1], got {flags.near_dup}")
    out_dir = flags.out if flags.out is not None else default_out_dir(data)
    _check_out(out_dir, flags.force)
    datasets = _load_all(data, flags.field)
    ensure_writable_dir(out_dir)  # after the inputs load: a bad input leaves no empty folder behind
    model = _make_embedder(flags.embedder, flags.batch_size, err_console)
    if flags.embedder_fit == "joint" and not model.fits_corpus:
        _notice(err_console, f"--embedder-fit joint has no effect on {model.name}: it is not fitted on the inputs")
    cache = None if flags.no_cache else (flags.cache_dir or out_dir / "cache")
    options = EvalOptions(duplicate_threshold=flags.dup_threshold, embedder_fit=flags.embedder_fit,  # type: ignore[arg-type]
                          near_dup_threshold=flags.near_dup)
    result = _run_eval(datasets, model, cache, options, err_console)
    images = {} if flags.no_plots else _plots(result, out_dir, flags.projection, flags.max_plot_points, err_console)
    written = write_outputs(result, out_dir, images)
    _summary(result, [*written.values(), *(out_dir / f for f in images.values())], console)
