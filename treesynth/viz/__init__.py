"""Pictures of a run: the partition tree as a self-contained HTML page."""

from __future__ import annotations

from treesynth.viz.tree_html import render_tree_html, sample_preview

__all__ = ["render_tree_html", "sample_preview"]
