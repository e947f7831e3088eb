"""Wording shared by every command's output: counts with the right noun form ("1 leaf", "2 leaves")."""

from __future__ import annotations

_IRREGULAR = {"leaf": "leaves", "entry": "entries"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` followed by ``noun`` in the form the count takes: ``plural(1, "leaf") == "1 leaf"``,
    ``plural(3, "leaf") == "3 leaves"``; ``many`` overrides the plural form (default: a few irregular nouns,
    else ``noun + "s"``)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or _IRREGULAR.get(noun, noun + 's')}"
