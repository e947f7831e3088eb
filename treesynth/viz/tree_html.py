"""Render a partition tree and its samples as one self-contained HTML page.

The page uses nested ``<details>`` elements (collapsible without JavaScript), shows per node the value,
the criterion its children split on, the number of samples and leaves below it, the pivots, and a few
sample previews at each leaf. All CSS is inline; there are no external assets, and a two-button inline
script only expands or collapses everything.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from treesynth.errors import DataError
from treesynth.metrics.structure import node_label

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:72rem;
color:#1f2328;padding:0 1rem}
h1{font-size:1.4rem;margin:.2rem 0}.task{color:#57606a;margin:.2rem 0 1rem}
.stats span{display:inline-block;background:#f1f3f5;border-radius:4px;padding:.1rem .5rem;margin:0 .3rem .3rem 0}
details{margin:.15rem 0 .15rem 1.1rem;border-left:1px solid #d0d7de;padding-left:.6rem}
details.root{margin-left:0;border-left:none;padding-left:0}
summary{cursor:pointer;padding:.1rem 0}summary:hover{background:#f6f8fa}
.val{font-weight:600}.crit{color:#0969da;font-size:.85em;margin-left:.4rem}
.count{color:#57606a;font-size:.85em;margin-left:.4rem}
.badge{font-size:.75em;background:#fff1e5;color:#953800;border-radius:4px;padding:0 .35rem;margin-left:.3rem}
.pivots{color:#57606a;font-size:.85em;margin:.2rem 0 .2rem 1.1rem}
ol.samples{margin:.2rem 0 .4rem 1.1rem;padding-left:1.2rem}
ol.samples li{white-space:pre-wrap;background:#f6f8fa;border-radius:4px;padding:.2rem .4rem;margin:.15rem 0;
font-size:.9em}
.more{color:#57606a;font-size:.85em;margin-left:1.1rem}
button{margin-right:.4rem}pre{background:#f6f8fa;padding:.5rem;overflow:auto;font-size:.85em}
"""

_SCRIPT = "function setAll(o){document.querySelectorAll('details.node').forEach(function(d){d.open=o;});}"


@dataclass(frozen=True)
class _Options:
    previews: int
    preview_chars: int
    open_depth: int


@dataclass
class _Counts:
    samples: int = 0
    leaves: int = 0


def sample_preview(sample: Mapping[str, Any], limit: int = 300) -> str:
    """One-string preview of a sample: its ``text``, or ``key: value`` lines of its ``fields``; truncated."""
    text = sample.get("text")
    if not isinstance(text, str):
        fields = sample.get("fields")
        if isinstance(fields, Mapping):
            text = "\n".join(f"{k}: {v}" for k, v in fields.items())
        else:
            text = json.dumps({k: v for k, v in sample.items() if k not in {"path", "leaf_id", "id"}})
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _count(node: Mapping[str, Any], by_leaf: Mapping[str, Sequence[Any]], out: dict[int, _Counts]) -> _Counts:
    children = node.get("children") or []
    counts = _Counts()
    if not children:
        counts = _Counts(samples=len(by_leaf.get(str(node.get("id")), ())), leaves=1)
    for child in children:
        sub = _count(child, by_leaf, out)
        counts.samples += sub.samples
        counts.leaves += sub.leaves
    out[id(node)] = counts
    return counts


class _Renderer:
    def __init__(self, by_leaf: Mapping[str, Sequence[Mapping[str, Any]]], counts: dict[int, _Counts], opts: _Options):
        self.by_leaf = by_leaf
        self.counts = counts
        self.opts = opts
        self.parts: list[str] = []

    def node(self, node: Mapping[str, Any], depth: int) -> None:
        counts = self.counts[id(node)]
        children = node.get("children") or []
        classes = "node root" if depth == 0 else "node"
        opened = " open" if depth < self.opts.open_depth else ""
        self.parts.append(f'<details class="{classes}"{opened}><summary>{self._summary(node, counts)}</summary>')
        pivots = node.get("pivots") or []
        if pivots:
            items = "; ".join(escape(str(p)) for p in pivots)
            self.parts.append(f'<div class="pivots">pivots ({len(pivots)}): {items}</div>')
        if children:
            for child in children:
                self.node(child, depth + 1)
        else:
            self._samples(self.by_leaf.get(str(node.get("id")), ()))
        self.parts.append("</details>")

    def _summary(self, node: Mapping[str, Any], counts: _Counts) -> str:
        html = f'<span class="val">{escape(node_label(node.get("value")))}</span>'
        if node.get("infinite"):
            html += '<span class="badge">infinite</span>'
        criterion = node.get("criterion")
        if criterion and node.get("children"):
            html += f'<span class="crit">split by: {escape(str(criterion))}</span>'
        noun = "sample" if counts.samples == 1 else "samples"
        leaves = "" if counts.leaves == 1 and not node.get("children") else f" · {counts.leaves} leaves"
        return html + f'<span class="count">{counts.samples} {noun}{leaves}</span>'

    def _samples(self, samples: Sequence[Mapping[str, Any]]) -> None:
        shown = samples[: self.opts.previews]
        if shown:
            items = "".join(f"<li>{escape(sample_preview(s, self.opts.preview_chars))}</li>" for s in shown)
            self.parts.append(f'<ol class="samples">{items}</ol>')
        if len(samples) > len(shown):
            self.parts.append(f'<div class="more">… and {len(samples) - len(shown)} more</div>')


def _task_text(tree: Mapping[str, Any]) -> str:
    task = tree.get("task")
    if isinstance(task, str):
        return task
    if isinstance(task, Mapping):
        for key in ("description", "sentence", "task", "text", "name"):
            if isinstance(task.get(key), str):
                return str(task[key])
        return json.dumps(task, ensure_ascii=False)
    return ""


def _depth(node: Mapping[str, Any]) -> int:
    children = node.get("children") or []
    return 1 + max((_depth(c) for c in children), default=0) if children else 0


def render_tree_html(
    tree: dict[str, Any],
    samples: list[dict[str, Any]],
    *,
    title: str = "TreeSynth partition tree",
    previews: int = 3,
    preview_chars: int = 300,
    open_depth: int = 2,
) -> str:
    """A self-contained HTML page showing ``tree`` (the ``tree.json`` dict) with ``samples`` at its leaves.

    Args:
        tree: ``{"task": ..., "config": ..., "root": node}``; nodes have ``id``, ``value``, ``criterion``,
            ``infinite``, ``pivots`` and ``children``.
        samples: ``samples.jsonl`` records; each is placed at the leaf named by its ``leaf_id``.
        title: Page title.
        previews: Sample previews shown per leaf.
        preview_chars: Characters per preview before truncation.
        open_depth: Nodes shallower than this start expanded.

    Raises:
        DataError: ``tree`` has no ``root`` object.
    """
    root = tree.get("root")
    if not isinstance(root, Mapping):
        raise DataError("tree.json: missing object 'root'")
    by_leaf: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        by_leaf[str(sample.get("leaf_id"))].append(sample)
    counts: dict[int, _Counts] = {}
    total = _count(root, by_leaf, counts)
    renderer = _Renderer(by_leaf, counts, _Options(previews, preview_chars, open_depth))
    renderer.node(root, 0)
    unplaced = len(samples) - total.samples
    stats = [
        f"{total.leaves} leaves",
        f"depth {_depth(root)}",
        f"{len(samples)} samples",
        f"{unplaced} samples without a known leaf" if unplaced else "",
    ]
    head = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head><body>"
        f'<h1>{escape(title)}</h1><p class="task">{escape(_task_text(tree))}</p>'
        f'<div class="stats">{"".join(f"<span>{escape(s)}</span>" for s in stats if s)}</div>'
        '<p><button type="button" onclick="setAll(true)">Expand all</button>'
        '<button type="button" onclick="setAll(false)">Collapse all</button></p>'
    )
    config = tree.get("config")
    tail = ""
    if config:
        dumped = escape(json.dumps(config, indent=2, ensure_ascii=False, default=str))
        tail = f"<details><summary>Configuration</summary><pre>{dumped}</pre></details>"
    return head + "".join(renderer.parts) + tail + "</body></html>\n"
