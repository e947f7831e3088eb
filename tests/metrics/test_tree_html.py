"""The tree page parses as HTML, nests like the tree, counts samples and escapes everything."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
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


CHROMIUM = Path("/usr/bin/chromium")
PROBE = ("<script>document.querySelector('button').click();"  # "Expand all": runs the page's own script
         "document.body.setAttribute('data-open', document.querySelectorAll('details.node[open]').length);</script>")


def show_html(run: Path, output: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "treesynth", "tree", "show", str(run), "--format", "html",
                           "--output", str(output)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and f"wrote {output}" in done.stderr
    return output.read_text(encoding="utf-8")


def test_tree_show_html_cli(run_dir: Path, tmp_path: Path) -> None:
    page = show_html(run_dir, tmp_path / "tree.html")
    p = parse(page)
    assert page.startswith("<!DOCTYPE html>") and p.assets == []
    assert p.details == 7 + 1 and "24 samples" in p.summaries[0]
    assert any(s.startswith("shopping") and "6 samples" in s for s in p.summaries)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_page_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    page = show_html(run_dir, tmp_path / "tree.html")
    assert page.rstrip().endswith("</body></html>")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body></html>", PROBE + "</body></html>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    p = parse(dom)
    nodes = 1 + 2 + 4  # root, two branches, four leaves
    assert 'data-open="7"' in dom, "Expand all (the page's script) must open every node"
    assert dom.count('<details class="node') == nodes and p.details == nodes + 1
    for label in ("easy", "hard", "shopping", "travel", "volume", "geometry"):
        assert any(s.startswith(label) for s in p.summaries), label
    assert "24 samples" in p.summaries[0] and len(p.items) == 4 * 3
    shot = tmp_path / "tree.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,900", (tmp_path / "tree.html").as_uri())
    from matplotlib import image

    pixels = image.imread(shot)
    assert pixels.shape[:2] == (900, 1000) and float(np.std(pixels)) > 0.01, "the screenshot is blank"
