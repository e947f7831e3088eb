"""The tree page parses as HTML, nests like the tree, counts samples and escapes everything."""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from treesynth.errors import DataError
from treesynth.viz import render_tree_html, sample_preview

VOID = {"meta", "br", "img", "input", "link", "hr"}


class TreeParser(HTMLParser):
    """Checks tag balance; records <details> nesting, summaries, list items and asset references."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.max_details_depth = 0
        self.details = 0
        self.summaries: list[str] = []
        self.items: list[str] = []
        self.assets: list[str] = []
        self._in: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.assets.append(value)
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "details":
            self.details += 1
            self.max_details_depth = max(self.max_details_depth, self.stack.count("details"))
        if tag in {"summary", "li"}:
            self._in, self._text = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack}"
        self.stack.pop()
        if tag == self._in:
            (self.summaries if tag == "summary" else self.items).append("".join(self._text))
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text.append(data)


def parse(page: str) -> TreeParser:
    parser = TreeParser()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


TreeFactory = Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]


def test_page_nests_like_the_tree_with_counts(tree_and_samples: TreeFactory) -> None:
    tree, samples = tree_and_samples(5)
    page = render_tree_html(tree, samples, previews=2)
    assert page.startswith("<!DOCTYPE html>")
    p = parse(page)
    # root + 2 branches + 4 leaves, plus the configuration panel
    assert p.details == 7 + 1
    assert p.max_details_depth == 3
    root = p.summaries[0]
    assert "20 samples" in root and "4 leaves" in root and "split by: difficulty" in root
    assert any(s.startswith("easy") and "10 samples" in s and "2 leaves" in s for s in p.summaries)
    assert any(s.startswith("shopping") and "5 samples" in s for s in p.summaries)
    assert len(p.items) == 4 * 2  # two previews per leaf
    assert page.count("… and 3 more") == 4
    assert "Grade-school math word problems" in page
    assert "pivots (2)" in page


def test_page_is_self_contained_and_escaped(tree_and_samples: TreeFactory) -> None:
    page = render_tree_html(*tree_and_samples(1))
    p = parse(page)
    assert p.assets == []
    assert "http://" not in page and "https://" not in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert any("<script>alert(1)</script>" in item for item in p.items)  # the parser unescapes it back


def test_infinite_nodes_structured_samples_and_unknown_leaves() -> None:
    tree = {
        "task": "free text task",
        "root": {
            "id": "r",
            "value": None,
            "criterion": "name",
            "children": [{"id": "i", "value": ["Ann", "Bo"], "infinite": True, "children": []}],
        },
    }
    samples: list[dict[str, Any]] = [
        {"leaf_id": "i", "fields": {"question": "Q?", "answer": "A."}},
        {"leaf_id": "ghost", "text": "lost"},
    ]
    page = render_tree_html(tree, samples)
    p = parse(page)
    assert any("Ann | Bo" in s and "infinite" in s for s in p.summaries)
    assert "question: Q?\nanswer: A." in p.items
    assert "1 samples without a known leaf" in page


def test_sample_preview_truncates() -> None:
    assert sample_preview({"text": "x" * 50}, limit=10) == "x" * 9 + "…"
    assert sample_preview({"text": "short"}) == "short"


def test_missing_root_is_a_data_error() -> None:
    with pytest.raises(DataError, match="root"):
        render_tree_html({"task": {}}, [])


def test_page_from_a_run_directory(run_dir: Path) -> None:
    tree = json.loads((run_dir / "tree.json").read_text())
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    p = parse(render_tree_html(tree, samples))
    assert "24 samples" in p.summaries[0]
