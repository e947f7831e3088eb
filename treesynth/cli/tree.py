"""``treesynth tree show``: print a run's partition tree as text, JSON, mermaid or HTML."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from treesynth.cli._common import cli_command
from treesynth.errors import ConfigError
from treesynth.io import iter_jsonl, type_name
from treesynth.viz.tree_text import render_mermaid, render_text

RUN_FILES = frozenset({"tree.json", "samples.jsonl", "run.json", "treesynth.db", "rejected.jsonl", "balanced.jsonl",
                       "routing.jsonl", "unrouted.jsonl"})
"""Files a run or balance directory owns; ``tree show --output`` never overwrites them."""

tree_app = typer.Typer(help="Inspect partition trees.", no_args_is_help=True)


class Format(StrEnum):
    """Output formats of ``tree show``."""

    text = "text"
    json = "json"
    mermaid = "mermaid"
    html = "html"


def register(app: typer.Typer) -> None:
    """Add the ``tree`` command group to ``app``."""
    app.add_typer(tree_app, name="tree")


def load_tree(path: Path) -> tuple[dict[str, Any], Path]:
    """Read ``tree.json`` from a run directory or a file path; return it and the run directory."""
    file = path / "tree.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file} does not exist; pass a run directory or its tree.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file} line {exc.lineno}: not valid JSON; pass a tree.json written by treesynth") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text; pass a tree.json written by treesynth") from None
    if not isinstance(data, dict) or "root" not in data:
        raise ConfigError(f"{file} has no 'root'; pass a tree.json written by treesynth")
    _check_nodes(file, data["root"])
    return data, file.parent


def _check_nodes(file: Path, root: Any) -> None:
    """Refuse a hand-edited tree whose nodes the renderers cannot walk (a node that is no object, children
    that are no list), naming the first such node."""
    stack: list[tuple[str, Any]] = [("root", root)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            raise ConfigError(f"{file}: {where} is {type_name(node)}, not a node object (edited by hand?); pass "
                              "a tree.json written by treesynth")
        children = node.get("children", [])
        if not isinstance(children, list):
            raise ConfigError(f"{file}: {where}.children is {type_name(children)}, not an array (edited by "
                              "hand?); pass a tree.json written by treesynth")
        stack += [(f"{where}.children.{i}", child) for i, child in enumerate(children)]


def _samples(run_dir: Path) -> list[dict[str, Any]]:
    file = run_dir / "samples.jsonl"
    if not file.exists():
        return []
    return [record for _, record in iter_jsonl(file, allow_empty=True)]


@tree_app.command("show", no_args_is_help=True)
@cli_command()
def show(
    path: Annotated[Path, typer.Argument(help="A run directory or a tree.json file.")],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout. "
                                                                               r"\[default: stdout]")]
    = None,
) -> None:
    """Show the partition tree of a run."""
    tree, run_dir = load_tree(path)
    if fmt is Format.json:
        rendered = json.dumps(tree, indent=2, ensure_ascii=False)
    elif fmt is Format.mermaid:
        rendered = render_mermaid(tree["root"])
    elif fmt is Format.html:
        from treesynth.viz.tree_html import render_tree_html

        rendered = render_tree_html(tree, _samples(run_dir))
    else:
        rendered = render_text(tree["root"])
    if output is None:
        typer.echo(rendered)
    else:
        _write_output(output, rendered, run_dir)
        typer.echo(f"wrote {output}", err=True)


def _write_output(output: Path, rendered: str, run_dir: Path) -> None:
    """Write ``--output``, refusing to overwrite a file of the run it shows or to fail with a traceback."""
    if output.exists() and output.resolve().parent == run_dir.resolve() and output.name in RUN_FILES:
        raise ConfigError(f"--output {output} would overwrite the run's own {output.name}; choose another file")
    try:
        output.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --output {output} ({exc.strerror or exc}); choose a writable path") from None
