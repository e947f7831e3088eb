"""Plain-text and mermaid renderings of a ``tree.json`` root node (dicts in, strings out)."""

from __future__ import annotations

from typing import Any


def _label(node: dict[str, Any]) -> str:
    value = node.get("value")
    if value is None:
        name = "(root)"
    elif isinstance(value, list):
        name = f"∞ one of {len(value)} values ({', '.join(map(str, value[:3]))}, ...)"
    else:
        name = str(value)
    if node.get("children"):
        return f"{name}  --[{node.get('criterion')}]"
    reason = node.get("leaf_reason")
    note = f"  ({reason})" if reason and reason != "max depth" else ""
    return f"{name}  [{node.get('samples', 0)}/{node.get('quota', 0)} samples]{note}"


def render_text(root: dict[str, Any]) -> str:
    """An indented tree with box-drawing branches; leaves show samples/quota."""
    lines = [_label(root)]

    def walk(node: dict[str, Any], prefix: str) -> None:
        children = node.get("children", [])
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_label(child)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines)


def render_mermaid(root: dict[str, Any]) -> str:
    """A mermaid ``graph TD`` definition; edges are labelled with the parent's criterion."""
    lines = ["graph TD"]

    def text(node: dict[str, Any]) -> str:
        return _label(node).split("  --[")[0].replace('"', "'")

    def walk(node: dict[str, Any]) -> None:
        lines.append(f'  n{node["id"]}["{text(node)}"]')
        for child in node.get("children", []):
            criterion = str(node.get("criterion", "")).replace('"', "'")
            lines.append(f'  n{node["id"]} -- "{criterion}" --> n{child["id"]}')
            walk(child)

    walk(root)
    return "\n".join(lines)
