"""Evaluate datasets: compute every metric into a JSON-ready dict, write ``metrics.json`` and ``report.md``.

The flow is ``evaluate(datasets, embedder) → EvalResult`` (embeddings kept for plots), then
``write_outputs(result, out_dir, plots)``. The dict form (:meth:`EvalResult.to_dict`) is what
``metrics.json`` holds::

    {"format": 1, "embedder": str, "embedder_fit": "dataset" | "joint" | "none",
     "options": {...}, "plots": {name: file},
     "datasets": [{"name", "source", "kind", "field", "samples",
                   "embedding": {...}, "lexical": {...}, "structure": {...} | null}, ...]}
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from treesynth.metrics.data import LoadedDataset
from treesynth.metrics.embedders import Embedder, EmbeddingCache, Matrix, embed_texts
from treesynth.metrics.embedding import DEFAULT_DUPLICATE_THRESHOLD, embedding_summary
from treesynth.metrics.lexical import exact_duplicate_rate, lexical_summary, self_bleu, tokenize
from treesynth.metrics.structure import structure_summary
from treesynth.neardup import DEFAULT_THRESHOLD as DEFAULT_NEAR_DUP_THRESHOLD
from treesynth.neardup import near_duplicate_rate

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
FORMAT_VERSION = 1

#: ``(dataset name, done, total)`` -- distinct texts embedded so far for that dataset.
DatasetProgress = Callable[[str, int, int], None]

#: What a corpus-fitted embedder (the lexical one) is fitted on: each dataset alone, or all inputs together.
FitScope = Literal["dataset", "joint"]

#: ``metrics.json["embedder_fit"]`` values and how the report states them.
FIT_STATEMENTS = {
    "dataset": "fitted on each dataset alone (IDF per dataset): a dataset's scores do not depend on the other "
    "inputs evaluated with it.",
    "joint": "fitted on all inputs together (`--embedder-fit joint`, IDF over the union): the inputs are compared "
    "in one space, but a dataset's scores change when the set of inputs changes; evaluate with the default "
    "`--embedder-fit dataset` for scores that stand alone.",
    "none": "a fixed model (nothing fitted on the inputs): a dataset's scores do not depend on the other inputs.",
}


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is shown: section and key in the dataset dict, label, better direction, formula."""

    section: str
    key: str
    label: str
    better: str
    formula: str


#: The headline metrics, in report order. ``better`` is the direction of *more diversity*.
HEADLINE: tuple[MetricInfo, ...] = (
    MetricInfo("embedding", "mean_cosine_distance", "Mean pairwise cosine distance", "↑", "1 − mean_{i≠j} cos(xᵢ, xⱼ)"),
    MetricInfo("embedding", "vendi", "Vendi score", "↑", "exp(−Σ λ log λ), λ = eig(XᵀX / n)"),
    MetricInfo("embedding", "vendi_normalized", "Vendi / n", "↑", "Vendi score divided by the sample count"),
    MetricInfo("embedding", "remote_clique", "Remote-clique (Euclidean)", "↑", "mean_{i≠j} ‖xᵢ − xⱼ‖"),
    MetricInfo("embedding", "mean_nn_distance", "Mean nearest-neighbour distance", "↑", "mean_i (1 − max_{j≠i} cos)"),
    MetricInfo("embedding", "near_duplicate_rate", "Near-duplicate rate", "↓", "share with max_{j≠i} cos ≥ threshold"),
    MetricInfo("lexical", "distinct_1", "distinct-1", "↑", "unique 1-grams / 1-grams"),
    MetricInfo("lexical", "distinct_2", "distinct-2", "↑", "unique 2-grams / 2-grams"),
    MetricInfo("lexical", "distinct_3", "distinct-3", "↑", "unique 3-grams / 3-grams"),
    MetricInfo("lexical", "entropy_2", "2-gram entropy (bits)", "↑", "−Σ p(g) log₂ p(g) over 2-grams"),
    MetricInfo("lexical", "self_bleu", "Self-BLEU", "↓", "corpus BLEU of each sample against all others"),
    MetricInfo(
        "lexical", "exact_duplicate_rate", "Exact-duplicate rate", "↓", "share of texts equal to an earlier one"
    ),
    MetricInfo("lexical", "minhash_near_duplicate_rate", "Near-duplicate rate (MinHash)", "↓",
               "share of texts with Jaccard(word 2-gram shingles) ≥ threshold to an earlier one"),
    MetricInfo("structure", "normalized_entropy", "Leaf entropy (normalised)", "↑", "H(p_leaf) / log L"),
    MetricInfo("structure", "gini", "Leaf Gini", "↓", "Σ|cₗ − cₘ| / (2 L² c̄)"),
    MetricInfo("structure", "coverage_at_quota", "Leaf coverage at quota", "↑", "share of leaves with cₗ ≥ quota"),
)


@dataclass(frozen=True)
class EvalOptions:
    """Metric settings recorded in ``metrics.json``.

    Attributes:
        duplicate_threshold: Cosine similarity at or above which two samples are near-duplicates.
        near_dup_threshold: Jaccard similarity (:mod:`treesynth.neardup`, the rule a run's gate applies) at or
            above which two samples are near-duplicates in ``minhash_near_duplicate_rate``.
        distinct_max_n: distinct-n and n-gram entropy are reported for ``n = 1..distinct_max_n``.
        bleu_max_n: Self-BLEU order (4 = self-BLEU-4).
        block: Rows per block for the chunked pairwise pass (``None``: automatic).
        embedder_fit: What a corpus-fitted embedder is fitted on: ``"dataset"`` (each dataset alone, so a
            dataset scores the same whatever else is evaluated) or ``"joint"`` (all inputs together, for a
            side-by-side comparison in one space). Ignored by fixed models.
    """

    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD
    near_dup_threshold: float = DEFAULT_NEAR_DUP_THRESHOLD
    distinct_max_n: int = 3
    bleu_max_n: int = 4
    block: int | None = None
    embedder_fit: FitScope = "dataset"


@dataclass
class DatasetResult:
    """One evaluated dataset: its input, embeddings (for plots) and metrics dict."""

    dataset: LoadedDataset
    embeddings: Matrix
    metrics: dict[str, Any]


@dataclass
class EvalResult:
    """Everything :func:`evaluate` computed; ``embedder_fit`` is the fit actually used (``"none"``: a fixed model)."""

    embedder: str
    options: EvalOptions
    results: list[DatasetResult] = field(default_factory=list)
    embedder_fit: str = "none"

    def to_dict(self, plots: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The ``metrics.json`` content (NaN/inf become ``null``)."""
        data = {
            "format": FORMAT_VERSION,
            "embedder": self.embedder,
            "embedder_fit": self.embedder_fit,
            "options": asdict(self.options),
            "plots": dict(plots or {}),
            "datasets": [r.metrics for r in self.results],
        }
        clean: dict[str, Any] = _finite(data)
        return clean


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def lexical_metrics(texts: Sequence[str], options: EvalOptions) -> dict[str, Any]:
    """distinct-n, n-gram entropy, self-BLEU (``None`` below 2 samples), exact and MinHash near-duplicates, mean
    length."""
    docs = [tokenize(t) for t in texts]
    out: dict[str, Any] = lexical_summary(docs, options.distinct_max_n)
    out["self_bleu"] = self_bleu(docs, options.bleu_max_n) if len(docs) >= 2 else None
    out["self_bleu_order"] = options.bleu_max_n
    out["exact_duplicate_rate"] = exact_duplicate_rate(texts)
    out["minhash_near_duplicate_rate"] = near_duplicate_rate(texts, options.near_dup_threshold)
    out["minhash_threshold"] = options.near_dup_threshold
    out["mean_tokens"] = float(np.mean([len(d) for d in docs])) if docs else 0.0
    return out


def dataset_metrics(dataset: LoadedDataset, embeddings: Matrix, options: EvalOptions) -> dict[str, Any]:
    """All metrics of one dataset as a dict (see the module docstring for the shape)."""
    texts = dataset.texts
    structure = None
    if dataset.has_structure:
        structure = structure_summary(
            [r.leaf_id or "" for r in dataset.records],
            [r.branch or "" for r in dataset.records],
            tree=dataset.tree,
            quota=dataset.quota(),
        )
    return {
        "name": dataset.name,
        "source": str(dataset.source),
        "kind": dataset.kind,
        "field": dataset.field,
        "samples": len(texts),
        "embedding": embedding_summary(embeddings, options.duplicate_threshold, block=options.block),
        "lexical": lexical_metrics(texts, options),
        "structure": structure,
    }


def evaluate(
    datasets: Sequence[LoadedDataset],
    embedder: Embedder,
    *,
    options: EvalOptions | None = None,
    cache: EmbeddingCache | None = None,
    progress: DatasetProgress | None = None,
) -> EvalResult:
    """Embed and score every dataset with the same embedder.

    A corpus-fitted embedder (``embedder.fits_corpus``) is fitted on each dataset's own texts, so a dataset
    scores the same whatever else is evaluated; with ``options.embedder_fit == "joint"`` it is fitted once on
    the union of all texts instead (recorded as ``embedder_fit`` in the result).
    """
    opts = options or EvalOptions()
    if opts.embedder_fit not in ("dataset", "joint"):
        raise ValueError(f"embedder_fit must be 'dataset' or 'joint', got {opts.embedder_fit!r}")
    fit = opts.embedder_fit if embedder.fits_corpus else "none"
    if fit == "joint":
        embedder.prepare([t for d in datasets for t in d.texts])
    result = EvalResult(embedder=embedder.name, options=opts, embedder_fit=fit)
    for dataset in datasets:
        report: Callable[[int, int], None] | None = None
        if progress is not None:
            report = _bind(progress, dataset.name)
        if fit == "dataset":
            embedder.prepare(dataset.texts)
        vectors = embed_texts(embedder, dataset.texts, cache=cache, progress=report)
        result.results.append(DatasetResult(dataset, vectors, dataset_metrics(dataset, vectors, opts)))
    return result


def _bind(progress: DatasetProgress, name: str) -> Callable[[int, int], None]:
    def call(done: int, total: int) -> None:
        progress(name, done, total)

    return call


# ----------------------------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _headline_table(datasets: Sequence[Mapping[str, Any]]) -> list[str]:
    names = [_cell(str(d["name"])) for d in datasets]
    lines = [
        "| metric | better | " + " | ".join(names) + " |",
        "|---|:-:|" + "---:|" * len(names),
        "| samples | | " + " | ".join(str(d["samples"]) for d in datasets) + " |",
    ]
    for info in HEADLINE:
        values = [(d.get(info.section) or {}).get(info.key) for d in datasets]
        if not any(info.key in (d.get(info.section) or {}) for d in datasets):
            continue  # not computed for any input (a None that was computed shows as n/a)
        lines.append(f"| {info.label} | {info.better} | " + " | ".join(_fmt(v) for v in values) + " |")
    return lines


def _structure_section(d: Mapping[str, Any], top_branches: int = 15) -> list[str]:
    s = d["structure"]
    spl = s["samples_per_leaf"]
    tree_leaves = s["leaves_in_tree"] if s["leaves_in_tree"] is not None else "unknown (no tree.json)"
    lines = [
        f"### Structure: {d['name']}",
        "",
        f"- leaves: {s['leaf_count']} considered, {s['leaves_with_samples']} with samples, in tree: {tree_leaves}",
        f"- samples per leaf: min {spl['min']:g}, mean {spl['mean']:.2f}, median {spl['median']:g}, max {spl['max']:g}",
        f"- normalised leaf entropy {_fmt(s['normalized_entropy'])}, Gini {_fmt(s['gini'])}, "
        f"coverage at quota {_fmt(s['coverage_at_quota'])} (quota: {s['quota_source']})",
    ]
    if s["unknown_leaf_samples"]:
        lines.append(f"- {s['unknown_leaf_samples']} samples name a leaf that is not in tree.json")
    shares = list(s["branch_shares"].items())
    lines += ["", "| first-level branch | share |", "|---|---:|"]
    lines += [f"| {_cell(b)} | {share:.1%} |" for b, share in shares[:top_branches]]
    if len(shares) > top_branches:
        rest = sum(share for _, share in shares[top_branches:])
        lines.append(f"| *{len(shares) - top_branches} more* | {rest:.1%} |")
    return [*lines, ""]


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md`` from the :meth:`EvalResult.to_dict` content (plots referenced by relative path)."""
    datasets = report["datasets"]
    opts = report["options"]
    lines = ["# Diversity report", "", f"Embedder: **{report['embedder']}**, {describe_fit(report)}", "",
             "## Inputs", ""]
    lines += ["| dataset | kind | source | text field | samples |", "|---|---|---|---|---:|"]
    lines += [
        f"| {_cell(d['name'])} | {d['kind']} | `{_cell(d['source'])}` | `{_cell(d['field'])}` | {d['samples']} |"
        for d in datasets
    ]
    lines += ["", "## Metrics", "", *_headline_table(datasets), ""]
    lines.append(
        f"Near-duplicates: cosine similarity ≥ {opts['duplicate_threshold']}; MinHash: Jaccard similarity of "
        f"word 2-gram shingles ≥ {opts.get('near_dup_threshold', DEFAULT_NEAR_DUP_THRESHOLD)}. "
        f"Self-BLEU-{opts['bleu_max_n']} is corpus BLEU (NLTK semantics) of each sample against all the others."
    )
    lines += ["", "## Structure", ""]
    structured = [d for d in datasets if d.get("structure")]
    if not structured:
        lines += ["No sample carries `leaf_id`, so structure metrics do not apply.", ""]
    for d in structured:
        lines += _structure_section(d)
    lines += _plots_section(report.get("plots") or {})
    lines += ["## Definitions", "", "| metric | better | formula |", "|---|:-:|---|"]
    lines += [f"| {m.label} | {m.better} | `{m.formula}` |" for m in HEADLINE]
    return "\n".join(lines) + "\n"


def describe_fit(report: Mapping[str, Any]) -> str:
    """How the embedder was fitted, in words, from a ``metrics.json`` dict (older files: not recorded)."""
    fit = report.get("embedder_fit")
    return FIT_STATEMENTS.get(str(fit), "fit scope not recorded.")


def _plots_section(plots: Mapping[str, str]) -> list[str]:
    if not plots:
        return []
    lines = ["## Plots", ""]
    for title, file_name in plots.items():
        lines += [f"### {title}", "", f"![{title}]({file_name})", ""]
    return lines


def write_outputs(result: EvalResult, out_dir: Path, plots: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write ``metrics.json`` and ``report.md`` into ``out_dir`` (created if needed); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = result.to_dict(plots)
    metrics_path = out_dir / METRICS_FILE
    metrics_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n", "utf-8")
    report_path = out_dir / REPORT_FILE
    report_path.write_text(render_markdown(report), encoding="utf-8")
    return {"metrics": metrics_path, "report": report_path}
