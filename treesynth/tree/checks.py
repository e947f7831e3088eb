"""Pure structural checks on a proposed split; no LLM, no I/O."""

from __future__ import annotations

from collections import Counter

from treesynth.models import normalize
from treesynth.signatures import CriterionSplit

VAGUE_VALUES = frozenset({"other", "others", "misc", "miscellaneous", "mixed", "various", "general", "none", "n a",
                          "unknown", "etc", "any"})
_GENERIC_WORDS = frozenset({"type", "types", "of", "the", "kind", "level", "category", "a", "an"})


def _core(criterion: str) -> frozenset[str]:
    words = normalize(criterion).split()
    return frozenset(w for w in words if w not in _GENERIC_WORDS) or frozenset(words)


def repeats_ancestor(criterion: str, ancestors: list[str]) -> str | None:
    """The ancestor criterion that ``criterion`` repeats (same words once generic ones are dropped), if any."""
    core = _core(criterion)
    return next((a for a in ancestors if _core(a) == core), None)


def split_problems(split: CriterionSplit, *, pivot_count: int, ancestors: list[str]) -> list[str]:
    """Every structural problem of ``split`` (empty list when it is acceptable).

    Checks: the criterion is non-empty and does not repeat an ancestor's; values are non-empty, not vague,
    and distinct after normalization; there are at least two; every pivot number 1..``pivot_count`` is
    assigned to exactly one value and no other number appears.
    """
    problems: list[str] = []
    if not normalize(split.criterion):
        problems.append("empty criterion")
    elif (ancestor := repeats_ancestor(split.criterion, ancestors)) is not None:
        problems.append(f"criterion {split.criterion!r} repeats ancestor criterion {ancestor!r}")
    values = [normalize(g.value) for g in split.groups]
    if any(not v for v in values):
        problems.append("empty value")
    if vague := sorted({v for v in values if v in VAGUE_VALUES}):
        problems.append(f"vague values {vague}")
    if dupes := sorted(v for v, c in Counter(values).items() if c > 1 and v):
        problems.append(f"duplicate values {dupes}")
    if len(set(values)) < 2:
        problems.append("fewer than two distinct values")
    assigned = Counter(n for g in split.groups for n in g.samples)
    if twice := sorted(n for n, c in assigned.items() if c > 1):
        problems.append(f"pivots {twice} assigned to more than one value")
    if missing := sorted(set(range(1, pivot_count + 1)) - set(assigned)):
        problems.append(f"pivots {missing} not assigned")
    if unknown := sorted(n for n in assigned if not 1 <= n <= pivot_count):
        problems.append(f"unknown pivot numbers {unknown}")
    return problems


def merge_values(known: list[str], new: list[str]) -> list[str]:
    """``known`` followed by the values of ``new`` that are non-empty, not vague and not duplicates."""
    seen = {normalize(v) for v in known}
    merged = list(known)
    for value in new:
        key = normalize(value)
        if key and key not in seen and key not in VAGUE_VALUES:
            seen.add(key)
            merged.append(value.strip())
    return merged
