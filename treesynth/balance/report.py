"""``report.md`` and ``leaf_distribution.png`` for a balance run: the leaf distribution before and after."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from treesynth.store import write_atomic
from treesynth.wording import plural

logger = logging.getLogger(__name__)


def write_report(out: Path, summary: dict[str, Any], before: dict[str, int], after: dict[str, int]) -> None:
    """Write the Markdown report and, when matplotlib is installed, the before/after bar chart."""
    picture = _plot(out / "leaf_distribution.png", before, after)
    counts, dist, routing = summary["counts"], summary["distribution"], summary["routing"]
    lines = [
        f"# Balance report: {summary['task']['description']}",
        "",
        f"Input `{summary['input']['path']}`: {counts['input']} records (text: `{summary['input']['field']}`).",
        f"Status: **{summary['status']}**; output {counts['samples']} records over {plural(counts['leaves'], 'leaf')} "
        f"(target {counts['target']}, shortfall {counts['shortfall']}).",
        "",
        "| input records | count |",
        "|---|---|",
        *(f"| {name} | {counts[name]} |" for name in ("kept", "downsampled", "duplicate", "unrouted")),
        f"| **total** | {sum(counts[n] for n in ('kept', 'downsampled', 'duplicate', 'unrouted'))} |",
        "",
        f"Synthesized to fill sparse leaves: {counts['synthesized']} (rejected by the sample gate: "
        f"{counts.get('rejected', 0)}, see `rejected.jsonl`).",
        "",
        "| leaf distribution | before | after |",
        "|---|---|---|",
        *(f"| {key.replace('_', ' ')} | {_fmt(dist['before'][key])} | {_fmt(dist['after'][key])} |"
          for key in ("samples", "normalized_entropy", "gini", "empty_leaves")),
        "",
        f"Routing: {routing['calls']} LLM calls for {routing['decisions']} routing decisions "
        f"({routing['calls_per_sample_per_level']} calls per sample per level).",
        "",
    ]
    if picture:
        lines += ["![leaf distribution before and after](leaf_distribution.png)", ""]
    write_atomic(out / "report.md", "\n".join(lines))


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _plot(path: Path, before: dict[str, int], after: dict[str, int]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib not installed; skipping %s (pip install 'treesynth[metrics]')", path.name)
        return False
    leaves = sorted(before, key=lambda leaf: (-before[leaf], leaf))
    xs = range(len(leaves))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(leaves)), 3.5), dpi=100)
    ax.bar([x - 0.2 for x in xs], [before[leaf] for leaf in leaves], width=0.4, label="before")
    ax.bar([x + 0.2 for x in xs], [after.get(leaf, 0) for leaf in leaves], width=0.4, label="after")
    ax.set_xlabel("leaf (sorted by original size)")
    ax.set_ylabel("samples")
    ax.set_xticks([])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
