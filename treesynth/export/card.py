"""The dataset card: ``README.md`` with Hub front matter, the tree, the diversity report card and how to reproduce.

Front matter: ``configs`` (one per written config, ``data_files`` under ``data/``; the clean training config is
the default), ``license`` (a placeholder to choose), ``size_categories``, ``tags`` and ``task_categories`` when
given. The body embeds the partition tree as mermaid with per-leaf sample counts, a column-statistics table, the
diversity metrics (embedder named), duplicate and sample-gate statistics, the models and the run configuration,
and the exact command that reproduces the run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from treesynth.export.hub import WrittenConfig
from treesynth.export.reproduce import CONFIG_FILE, Reproduction
from treesynth.export.source import PREFIX, RunSource
from treesynth.metrics.report import HEADLINE
from treesynth.viz.tree_text import render_mermaid

_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))


@dataclass(frozen=True)
class CardMeta:
    """What the user adds to the card: the license (a placeholder by default), task categories, a Hub repo."""

    license: str = "other"
    task_categories: tuple[str, ...] = ()
    repo: str | None = None


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket of ``rows``."""
    return next((name for bound, name in _SIZES if rows < bound), "n>100M")


def front_matter(configs: Sequence[WrittenConfig], default: str, meta: CardMeta) -> str:
    """The YAML front matter (between ``---`` lines)."""
    data: dict[str, Any] = {
        "configs": [{"config_name": c.name, "data_files": [{"split": "train", "path": c.data_files}],
                     **({"default": True} if c.name == default else {})} for c in configs],
        "license": meta.license,
        "size_categories": [size_category(max((c.rows for c in configs), default=0))],
        "tags": ["treesynth", "synthetic"],
    }
    if meta.task_categories:
        data["task_categories"] = list(meta.task_categories)
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if meta.license == "other":
        body = body.replace("license: other\n", "license: other  # placeholder: choose the license of your data\n")
    return f"---\n{body}---\n"


def counted_tree(source: RunSource) -> dict[str, Any] | None:
    """``tree.json``'s root with every leaf's ``samples`` set to the exported count (and its quota)."""
    if source.tree is None or not isinstance(source.tree.get("root"), dict):
        return None
    counts = source.leaf_counts()
    quota = (source.run.get("allocation") or {}).get("quota") or {}
    root: dict[str, Any] = copy.deepcopy(source.tree["root"])
    stack = [root]
    while stack:
        node = stack.pop()
        if node.get("children"):
            stack.extend(node["children"])
        else:
            node["samples"] = counts.get(str(node.get("id")), 0)
            node["quota"] = quota.get(str(node.get("id")), node.get("quota", 0))
    return root


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def column_stats(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A table of the content columns: type, non-null share, unique share and mean whitespace tokens."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| column | type | non-null | unique | mean tokens |", "|---|---|---:|---:|---:|"]
    for name in columns:
        values = [row.get(name) for row in rows if row.get(name) is not None]
        kinds = sorted({type(v).__name__ for v in values}) or ["null"]
        texts = [v if isinstance(v, str) else repr(v) for v in values]
        tokens = sum(len(t.split()) for t in texts) / len(texts) if texts else 0.0
        lines.append(f"| `{name}` | {'/'.join(kinds)} | {len(values) / max(1, len(rows)):.0%} | "
                     f"{len(set(texts)) / max(1, len(texts)):.0%} | {tokens:.1f} |")
    return lines


def _diversity(report: Mapping[str, Any] | None) -> list[str]:
    if report is None:
        return ["Not computed."]
    lines = [f"Measured by `treesynth eval` with the embedder **{report['embedder']}** on the text field "
             f"`{report.get('field')}` ({report.get('samples')} samples).", "",
             "| metric | better | value |", "|---|:-:|---:|"]
    for info in HEADLINE:
        value = (report.get(info.section) or {}).get(info.key)
        if value is not None:
            lines.append(f"| {info.label} | {info.better} | {_cell(value)} |")
    return lines


def _gate(source: RunSource) -> list[str]:
    counts = source.run.get("counts") or {}
    lines = ["| what | count |", "|---|---:|"]
    labels = (("samples", "delivered samples"), ("target", "samples asked for"), ("shortfall", "shortfall"),
              ("duplicates_removed", "exact or normalized duplicates removed"),
              ("near_duplicates", "near-duplicates removed"), ("rejected", "rejected by the sample gate"),
              ("unused_candidates", "accepted but unneeded candidates"), ("kept", "input records kept"),
              ("downsampled", "input records downsampled"), ("duplicate", "input records duplicating a kept one"),
              ("unrouted", "input records no child fitted"), ("synthesized", "rows synthesized into sparse leaves"))
    lines += [f"| {label} | {counts[key]} |" for key, label in labels if counts.get(key) is not None]
    reasons = counts.get("rejected_by_reason") or {}
    if reasons:
        lines += ["", "| gate rejection reason | count |", "|---|---:|"]
        lines += [f"| {_cell(reason)} | {n} |" for reason, n in reasons.items()]
    return lines + _near_duplicates(source)


def _sample_text(row: Mapping[str, Any]) -> str:
    if isinstance(row.get("fields"), Mapping):
        return " | ".join(f"{k}: {v}" for k, v in row["fields"].items())
    return str(row.get("text", ""))


def _near_duplicates(source: RunSource, shown: int = 3) -> list[str]:
    """A few near-duplicates the run removed, each beside the sample it collided with (``duplicate_of``)."""
    pairs = [row for row in source.rejected if row.get("reason") == "near-duplicate"][:shown]
    if not pairs:
        return []
    kept = {row.provenance.get(PREFIX + "id"): row.content for row in source.rows}
    lines = ["", "| removed near-duplicate | duplicate of |", "|---|---|"]
    for row in pairs:
        other = row.get("duplicate_of")
        content = kept.get(other) if isinstance(other, str) else None
        text = " | ".join(map(str, content.values())) if content else _sample_text(other) if isinstance(
            other, Mapping) else str(other)
        lines.append(f"| {_cell(_sample_text(row))} | {_cell(text)} |")
    return lines


def _models(source: RunSource) -> list[str]:
    llm = source.run.get("llm") or {}
    lines = ["| stage | model | calls | failed | prompt tokens | completion tokens | cost (USD) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in llm.get("by_stage") or []:
        lines.append(f"| {row.get('stage')} | `{row.get('model')}` | {row.get('calls')} | {row.get('failed')} | "
                     f"{row.get('prompt_tokens')} | {row.get('completion_tokens')} | {_cell(row.get('cost_usd'))} |")
    return lines


def _configs(configs: Sequence[WrittenConfig], default: str) -> list[str]:
    lines = ["| config | rows | columns |", "|---|---:|---|"]
    for c in configs:
        name = f"`{c.name}` (default)" if c.name == default else f"`{c.name}`"
        lines.append(f"| {name} | {c.rows} | {', '.join(f'`{col}`' for col in c.columns)} |")
    return lines


@dataclass(frozen=True)
class CardInputs:
    """Everything the card shows besides the run itself."""

    configs: Sequence[WrittenConfig]
    default: str
    content_rows: Sequence[Mapping[str, Any]]
    diversity: Mapping[str, Any] | None
    reproduction: Reproduction
    meta: CardMeta


def render_card(source: RunSource, inputs: CardInputs) -> str:
    """The whole ``README.md``."""
    task = source.task.get("description", source.path.name)
    name = inputs.meta.repo or "PATH_OR_REPO"
    tree = counted_tree(source)
    lines = [front_matter(inputs.configs, inputs.default, inputs.meta), f"# {task}", "",
             f"Synthetic data generated with [treesynth](https://arxiv.org/abs/2503.17195) (TreeSynth: a "
             f"data-space partitioning tree grown by an LLM, then synthesis at every leaf). Run kind: "
             f"`{source.kind}`, status `{source.run.get('status')}`, {len(source.rows)} samples.", "",
             "## Configs", "", *_configs(inputs.configs, inputs.default), "",
             f"Columns starting with `{PREFIX}` are provenance (sample id, leaf id, path, origin, model, per-call "
             f"seed, call id); the `-clean` config has none of them.", "",
             "```python", "from datasets import load_dataset", "",
             f'data = load_dataset("{name}", "{inputs.default}", split="train")', "```", "",
             "## The partition tree", ""]
    if tree is None:
        lines += ["No tree.json in the run directory.", ""]
    else:
        lines += ["Every leaf shows its samples in this dataset / its quota.", "", "```mermaid",
                  render_mermaid(tree), "```", ""]
    lines += ["## Column statistics", "", *column_stats(inputs.content_rows), "",
              "## Diversity", "", *_diversity(inputs.diversity), "",
              "## Duplicates and the sample gate", "", *_gate(source), "",
              "## Models", "", *_models(source), "",
              "## Reproduce", "", "```bash", inputs.reproduction.command, "```", "",
              f"`{CONFIG_FILE}` (the run configuration, beside this card):", "",
              "```yaml", inputs.reproduction.files[CONFIG_FILE].rstrip(), "```", ""]
    return "\n".join(lines)
