"""Export a run as a Hugging Face dataset: training formats, provenance columns, and a card with the tree."""

from __future__ import annotations

from treesynth.export.card import CardMeta
from treesynth.export.exporter import ExportOptions, ExportResult, export_run
from treesynth.export.formats import FORMATS

__all__ = ["FORMATS", "CardMeta", "ExportOptions", "ExportResult", "export_run"]
