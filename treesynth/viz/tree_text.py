"""Plain-text and mermaid renderings of a ``tree.json`` root node (dicts in, strings out)."""

from __future__ import annotations

from typing import Any

INFINITE_MARK = "⚠ infinite split (values drawn per call, not separate branches)"
"""Ends the line of an infinite child: its parent's split collapsed into this one node (more values than the
width, or an unbounded criterion)."""


def _name(node: dict[str, Any]) -> str:
    value = node.get("value")
    if value is None:
        return "(root)"
    if isinstance(value, list):
        more = ", ..." if len(value) > 3 else ""
        return f"∞ one of {len(value)} values ({', '.join(map(str, value[:3]))}{more})"
    return str(value)


def _label(node: dict[str, Any], *, leaf_ids: bool = False) -> str:
    name = _name(node)
    mark = f"  {INFINITE_MARK}" if isinstance(node.get("value"), list) else ""
    if node.get("children"):
        return f"{name}  --[{node.get('criterion')}]{mark}"
    reason = node.get("leaf_reason")
    note = f"  ({reason})" if reason and reason != "max depth" else ""
    ident = f"  leaf {node.get('id')}" if leaf_ids else ""
    return f"{name}  [{node.get('samples', 0)}/{node.get('quota', 0)} samples]{ident}{note}{mark}"


def render_text(root: dict[str, Any]) -> str:
    """An indented tree with box-drawing branches; leaves show samples/quota and their id, infinite children
    are marked."""
    lines = [_label(root, leaf_ids=True)]

    def walk(node: dict[str, Any], prefix: str) -> None:
        children = node.get("children", [])
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_label(child, leaf_ids=True)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines)


def render_mermaid(root: dict[str, Any]) -> str:
    """A mermaid ``graph TD`` definition; edges are labelled with the parent's criterion."""
    lines = ["graph TD"]

    def text(node: dict[str, Any]) -> str:
        return _label(node).split("  --[")[0].removesuffix(f"  {INFINITE_MARK}").replace('"', "'")

    def walk(node: dict[str, Any]) -> None:
        lines.append(f'  n{node["id"]}["{text(node)}"]')
        for child in node.get("children", []):
            criterion = str(node.get("criterion", "")).replace('"', "'")
            lines.append(f'  n{node["id"]} -- "{criterion}" --> n{child["id"]}')
            walk(child)

    walk(root)
    return "\n".join(lines)
