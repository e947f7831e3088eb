"""PNG plots of an evaluation (matplotlib, Agg canvas, no pyplot state).

* a 2-D projection of the embeddings (PCA by default; t-SNE from scikit-learn on request, on a capped
  subsample) coloured by first-level branch;
* the samples-per-leaf histogram;
* with several datasets: a joint projection coloured by dataset and a bar chart comparing headline metrics.

matplotlib and scikit-learn are imported lazily; a missing matplotlib raises :class:`ConfigError` with the
install hint ``pip install 'treesynth[metrics]'``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from treesynth.errors import ConfigError
from treesynth.metrics.report import HEADLINE, DatasetResult, EvalResult

logger = logging.getLogger(__name__)

METRICS_HINT = "pip install 'treesynth[metrics]'"
ProjectionMethod = Literal["auto", "tsne", "pca"]

#: ``(step label, steps done, total steps)``: called before each plot and once more when all are written.
PlotProgress = Callable[[str, int, int], None]

#: Points per t-SNE (per dataset, and for the joint projection); t-SNE is slow beyond this on a laptop CPU.
TSNE_MAX_POINTS = 1000

_MAX_LEGEND = 12
_OTHER = "other"
_GREY = "#b0b0b0"


def plotting_available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float) -> Any:
    """A new matplotlib ``Figure`` bound to an Agg canvas (no pyplot, no global backend switch)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(f"plots need matplotlib: {METRICS_HINT}") from exc
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _pca_2d(x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """First two principal components by SVD of the centred data (zero-padded when rank < 2)."""
    centred = np.asarray(x, dtype=np.float64) - np.asarray(x, dtype=np.float64).mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = np.zeros((len(centred), 2))
    k = min(2, vt.shape[0])
    out[:, :k] = centred @ vt[:k].T
    return out


def resolve_method(method: ProjectionMethod, n: int) -> Literal["tsne", "pca"]:
    """The projection actually run on ``n`` points: ``pca``, or ``tsne`` when asked for (``tsne``, or ``auto``
    with scikit-learn installed) and there are at least 5 points.

    Raises:
        ConfigError: ``tsne`` without scikit-learn.
    """
    has_sklearn = importlib.util.find_spec("sklearn") is not None
    if method == "tsne" and not has_sklearn:
        raise ConfigError(f"t-SNE needs scikit-learn: {METRICS_HINT}")
    if method == "pca" or n < 5 or not has_sklearn:
        return "pca"
    return "tsne"


def project_2d(
    x: npt.NDArray[np.floating[Any]],
    method: ProjectionMethod = "pca",
    *,
    seed: int = 0,
) -> tuple[npt.NDArray[np.float64], str]:
    """Project rows of ``x`` to 2-D; returns the points and the method used (``"t-SNE"`` or ``"PCA"``).

    See :func:`resolve_method`. t-SNE runs with PCA initialisation, ``perplexity = min(30, (n − 1) / 3)``
    and a fixed seed; it projects every row given (callers subsample, see :func:`projection_sample`).
    """
    n = len(x)
    if resolve_method(method, n) == "pca":
        return _pca_2d(x), "PCA"
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    points = np.asarray(tsne.fit_transform(np.asarray(x, dtype=np.float32)), dtype=np.float64)
    return points, "t-SNE"


def _top_labels(labels: Sequence[str], limit: int = _MAX_LEGEND) -> list[str]:
    """Labels with all but the ``limit − 1`` most frequent merged into ``"other"`` when there are too many."""
    counts = Counter(labels)
    if len(counts) <= limit:
        return list(labels)
    keep = {lab for lab, _ in counts.most_common(limit - 1)}
    return [lab if lab in keep else _OTHER for lab in labels]


def _short(label: str, width: int = 38) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def plot_projection(
    points: npt.NDArray[np.floating[Any]],
    labels: Sequence[str],
    path: Path,
    *,
    title: str,
) -> Path:
    """Scatter 2-D ``points`` coloured by ``labels`` (top 11 labels + ``other``) and save a PNG."""
    fig = _figure(9.0, 6.5)
    ax = fig.add_subplot()
    merged = _top_labels(labels)
    order = [lab for lab, _ in Counter(merged).most_common() if lab != _OTHER]
    if _OTHER in merged:
        order.append(_OTHER)
    palette = _palette(len(order))
    arr = np.asarray(points)
    size = max(3.0, min(30.0, 3000.0 / max(len(arr), 1)))
    for colour, label in zip(palette, order, strict=True):
        mask = np.array([m == label for m in merged], dtype=bool)
        colour = _GREY if label == _OTHER else colour
        ax.scatter(arr[mask, 0], arr[mask, 1], s=size, color=colour, alpha=0.7, linewidths=0, label=_short(label))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=2, frameon=False)
    return _save(fig, path)


def _palette(k: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if k > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(k)]


def plot_leaf_histogram(counts: Sequence[int], path: Path, *, title: str) -> Path:
    """Histogram of samples per leaf (empty leaves included), with the mean marked; saves a PNG."""
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    arr = np.asarray(counts, dtype=np.float64)
    top = int(arr.max()) if len(arr) else 0
    bins: Any = np.arange(-0.5, top + 1.5, 1.0) if top <= 60 else 40
    ax.hist(arr, bins=bins, color="#4c72b0", edgecolor="white")
    if len(arr):
        ax.axvline(float(arr.mean()), color="#c44e52", linestyle="--", label=f"mean {arr.mean():.1f}")
        ax.legend(frameon=False)
    ax.set_xlabel("samples in leaf")
    ax.set_ylabel("leaves")
    ax.set_title(title)
    return _save(fig, path)


def plot_comparison(datasets: Sequence[Mapping[str, Any]], path: Path, *, title: str = "Diversity comparison") -> Path:
    """Small multiples: one bar panel per headline metric, one bar per dataset; saves a PNG."""
    names = [str(d["name"]) for d in datasets]
    panels = []
    for info in HEADLINE:
        raw = [(d.get(info.section) or {}).get(info.key) for d in datasets]
        if any(v is not None for v in raw):
            panels.append((info, [float("nan") if v is None else float(v) for v in raw]))
    cols = 4
    rows = max(1, -(-len(panels) // cols))
    fig = _figure(3.2 * cols, 2.6 * rows + 0.6)
    colours = _palette(len(names))
    for i, (info, values) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        bars = ax.bar(range(len(names)), values, color=colours)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        finite = [v for v in values if np.isfinite(v)]
        if finite and min(finite) >= 0:
            ax.set_ylim(0, max(max(finite) * 1.15, 1e-3))
        ax.set_title(f"{info.label} {info.better}", fontsize=9)
        ax.set_xticks(range(len(names)), [_short(n, 14) for n in names], rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def slug(name: str) -> str:
    """File-name-safe form of a dataset name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "dataset"


@dataclass(frozen=True)
class PlotOptions:
    """Projection settings.

    Attributes:
        method: ``pca`` (default, seconds), ``tsne`` (scikit-learn; slow, so run on at most
            ``tsne_max_points`` points) or ``auto`` (t-SNE when scikit-learn is installed, else PCA).
        max_points: Points plotted per dataset (and in all for the joint projection).
        tsne_max_points: Cap on the points given to one t-SNE.
        seed: Subsampling and t-SNE seed.
    """

    method: ProjectionMethod = "pca"
    max_points: int = 2000
    tsne_max_points: int = TSNE_MAX_POINTS
    seed: int = 0


def _subsample(n: int, limit: int, seed: int) -> npt.NDArray[np.int64]:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def projection_limit(n: int, opts: PlotOptions) -> int:
    """How many of ``n`` points one projection gets: ``max_points``, or fewer for t-SNE (``tsne_max_points``)."""
    limit = opts.max_points
    if resolve_method(opts.method, min(n, limit)) == "tsne":
        limit = min(limit, opts.tsne_max_points)
    return min(n, limit)


def projection_sample(n: int, opts: PlotOptions) -> npt.NDArray[np.int64]:
    """The (sorted, seeded) row indexes one projection of ``n`` points is computed on."""
    return _subsample(n, projection_limit(n, opts), opts.seed)


@dataclass
class _Step:
    label: str
    run: Callable[[], tuple[str, str] | None]


def write_plots(
    result: EvalResult, out_dir: Path, options: PlotOptions | None = None, progress: PlotProgress | None = None
) -> dict[str, str]:
    """Write every PNG for ``result`` into ``out_dir``; returns ``{plot title: file name}``.

    ``progress(label, done, total)`` is called before each plot (the label says what is being drawn, e.g.
    ``"t-SNE of 1000 embeddings (run-a)"``) and once more with ``done == total`` at the end.
    """
    opts = options or PlotOptions()
    steps = _steps(result, out_dir, opts)
    plots: dict[str, str] = {}
    for done, step in enumerate(steps):
        if progress is not None:
            progress(step.label, done, len(steps))
        if (made := step.run()) is not None:
            plots[made[0]] = made[1]
    if progress is not None:
        progress("plots written", len(steps), len(steps))
    logger.info("wrote %d plots to %s", len(plots), out_dir)
    return plots


def _method_label(n: int, opts: PlotOptions) -> str:
    return "t-SNE" if resolve_method(opts.method, n) == "tsne" else "PCA"


def _steps(result: EvalResult, out_dir: Path, opts: PlotOptions) -> list[_Step]:
    several = len(result.results) > 1
    steps: list[_Step] = []
    for r in result.results:
        suffix = f"-{slug(r.dataset.name)}" if several else ""
        n = len(r.embeddings)
        if n >= 2:
            k = projection_limit(n, opts)
            label = f"{_method_label(k, opts)} of {k} embeddings ({r.dataset.name})"
            steps.append(_Step(label, _projection_step(r, out_dir / f"projection{suffix}.png", opts)))
        structure = r.metrics.get("structure")
        if structure:
            histogram = _histogram_step(r, out_dir / f"leaf-sizes{suffix}.png")
            steps.append(_Step(f"leaf sizes ({r.dataset.name})", histogram))
    if several:
        steps.append(_Step("comparison chart", lambda: _comparison_chart(result, out_dir)))
        per = max(1, projection_limit(opts.max_points, opts) // len(result.results))
        total = sum(min(len(r.embeddings), per) for r in result.results)
        label = f"{_method_label(total, opts)} of {total} embeddings (all datasets)"
        steps.append(_Step(label, lambda: _joint_projection(result, out_dir, opts, per)))
    return steps


def _projection_step(r: DatasetResult, path: Path, opts: PlotOptions) -> Callable[[], tuple[str, str]]:
    def run() -> tuple[str, str]:
        n = len(r.embeddings)
        idx = projection_sample(n, opts)
        labels = [r.dataset.records[i].branch or r.dataset.name for i in idx]
        points, method = project_2d(r.embeddings[idx], opts.method, seed=opts.seed)
        title = f"{r.dataset.name}: {method} of {len(idx)}/{n} embeddings by first-level branch"
        plot_projection(points, labels, path, title=title)
        return f"Embedding projection ({r.dataset.name})", path.name

    return run


def _histogram_step(r: DatasetResult, path: Path) -> Callable[[], tuple[str, str]]:
    def run() -> tuple[str, str]:
        counts = list(r.metrics["structure"]["leaf_counts"].values())
        plot_leaf_histogram(counts, path, title=f"{r.dataset.name}: samples per leaf")
        return f"Samples per leaf ({r.dataset.name})", path.name

    return run


def _comparison_chart(result: EvalResult, out_dir: Path) -> tuple[str, str]:
    plot_comparison([r.metrics for r in result.results], out_dir / "comparison.png")
    return "Comparison of datasets", "comparison.png"


def _joint_projection(result: EvalResult, out_dir: Path, opts: PlotOptions, per: int) -> tuple[str, str] | None:
    parts, labels = [], []
    for r in result.results:
        idx = _subsample(len(r.embeddings), per, opts.seed)
        parts.append(r.embeddings[idx])
        labels += [r.dataset.name] * len(idx)
    dims = {p.shape[1] for p in parts if len(p)}
    if len(labels) < 2 or len(dims) != 1:
        return None
    points, method = project_2d(np.concatenate([p for p in parts if len(p)]), opts.method, seed=opts.seed)
    fitted = " (lexical IDF fitted per dataset)" if result.embedder_fit == "dataset" else ""
    title = f"All datasets: {method} of {len(labels)} embeddings by dataset{fitted}"
    plot_projection(points, labels, out_dir / "projection-all.png", title=title)
    return "Embedding projection (all datasets)", "projection-all.png"
