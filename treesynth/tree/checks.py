"""Pure structural checks on a proposed split; no LLM, no I/O."""

from __future__ import annotations

from collections import Counter

from treesynth.models import normalize
from treesynth.signatures import CriterionSplit

VAGUE_VALUES = frozenset({"other", "others", "misc", "miscellaneous", "mixed", "various", "general", "none", "n a",
                          "unknown", "etc", "any"})
MAX_VALUE_WORDS = 6
"""A value longer than this is a description or a copied sample, not a value of a criterion."""
_GENERIC_WORDS = frozenset({"type", "types", "of", "the", "kind", "level", "category", "a", "an"})


def _core(criterion: str) -> frozenset[str]:
    words = normalize(criterion).split()
    return frozenset(w for w in words if w not in _GENERIC_WORDS) or frozenset(words)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def task_words(task: str) -> frozenset[str]:
    """The words of a task description (stemmed), which a value must go beyond to name a subspace."""
    return frozenset(_stem(w) for w in normalize(task).split())


def value_key(value: str, task: frozenset[str] = frozenset()) -> str:
    """The words that make ``value`` distinct: stemmed, without generic words and ``task``'s words (all its
    words when nothing else is left), so ``"Addition problems"`` and ``"addition"`` share a key for a
    word-problem task."""
    words = {_stem(w) for w in normalize(value).split()}
    core = {w for w in words if w not in _GENERIC_WORDS} or words
    return " ".join(sorted(core - task or core))


def restates_task(value: str, task: frozenset[str]) -> bool:
    """Whether a value of two or more words only restates the task (``"math word problem"``)."""
    words = {_stem(w) for w in normalize(value).split()}
    return len(words) >= 2 and words <= task | _GENERIC_WORDS


def repeats_ancestor(criterion: str, ancestors: list[str]) -> str | None:
    """The ancestor criterion that ``criterion`` repeats (same words once generic ones are dropped), if any."""
    core = _core(criterion)
    return next((a for a in ancestors if _core(a) == core), None)


def split_problems(split: CriterionSplit, *, pivot_count: int, ancestors: list[str], task: str = "") -> list[str]:
    """Every structural problem of ``split`` (empty list when it is acceptable).

    Checks: the criterion is non-empty and does not repeat an ancestor's; values are non-empty, not vague,
    not numbers, at most :data:`MAX_VALUE_WORDS` words, and distinct after normalization; there are at least
    two and the pivots take at least two of them; every pivot number 1..``pivot_count`` is
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
    if restating := sorted({v for v in values if restates_task(v, task_words(task))}):
        problems.append(f"values {restating} restate the task instead of naming a part of it")
    if numeric := sorted({v for v in values if v and v.replace(" ", "").isdigit()}):
        problems.append(f"numeric values {numeric} (values must be kinds, not quantities or sample numbers)")
    if long := [v for v in values if len(v.split()) > MAX_VALUE_WORDS]:
        problems.append(f"{len(long)} values longer than {MAX_VALUE_WORDS} words (values must be short)")
    if dupes := sorted(v for v, c in Counter(values).items() if c > 1 and v):
        problems.append(f"duplicate values {dupes}")
    if len(set(values)) < 2:
        problems.append("fewer than two distinct values")
    elif sum(1 for g in split.groups if g.samples) < 2:
        problems.append("every pivot took the same value (the values do not separate the samples)")
    assigned = Counter(n for g in split.groups for n in g.samples)
    if twice := sorted(n for n, c in assigned.items() if c > 1):
        problems.append(f"pivots {twice} assigned to more than one value")
    if missing := sorted(set(range(1, pivot_count + 1)) - set(assigned)):
        problems.append(f"pivots {missing} not assigned")
    if unknown := sorted(n for n in assigned if not 1 <= n <= pivot_count):
        problems.append(f"unknown pivot numbers {unknown}")
    return problems


def merge_values(known: list[str], new: list[str], *, task: str = "") -> list[str]:
    """``known`` followed by the values of ``new`` that are non-empty, not vague and not duplicates.

    Duplicates are judged by :func:`value_key` (so ``"addition problems"`` repeats ``"addition"``); with a
    ``task``, a new value that only restates it is dropped too.
    """
    words = task_words(task)
    seen = {value_key(v, words) for v in known}
    merged = list(known)
    for value in new:
        norm = normalize(value)
        key = value_key(value, words)
        if norm and norm not in VAGUE_VALUES and key not in seen and not restates_task(value, words):
            seen.add(key)
            merged.append(value.strip())
    return merged
