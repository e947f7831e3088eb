"""Pure structural checks on a proposed split; no LLM, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

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


def stem(word: str) -> str:
    """``word`` with a plain plural ``-s`` folded (``deposits`` ~ ``deposit``)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def task_words(task: str) -> frozenset[str]:
    """The words of a task description (stemmed), which a value must go beyond to name a subspace."""
    return frozenset(stem(w) for w in normalize(task).split())


def value_key(value: str, task: frozenset[str] = frozenset()) -> str:
    """The words that make ``value`` distinct: stemmed, without generic words and ``task``'s words (all its
    words when nothing else is left), so ``"Addition problems"`` and ``"addition"`` share a key for a
    word-problem task."""
    words = {stem(w) for w in normalize(value).split()}
    core = {w for w in words if w not in _GENERIC_WORDS} or words
    return " ".join(sorted(core - task or core))


def restates_task(value: str, task: frozenset[str]) -> bool:
    """Whether a value of two or more words only restates the task (``"math word problem"``)."""
    words = {stem(w) for w in normalize(value).split()}
    return len(words) >= 2 and words <= task | _GENERIC_WORDS


def repeats_ancestor(criterion: str, ancestors: list[str]) -> str | None:
    """The ancestor criterion that ``criterion`` repeats (same words once generic ones are dropped), if any."""
    core = _core(criterion)
    return next((a for a in ancestors if _core(a) == core), None)


class ProblemKind(StrEnum):
    """What is wrong with a proposed split or value; shared by the tree builder and the optimizers' objectives."""

    EMPTY_CRITERION = "empty criterion"
    REPEATS_ANCESTOR = "repeats an ancestor criterion"
    EMPTY_VALUE = "empty"
    VAGUE_VALUE = "vague"
    RESTATES_TASK = "restates the task"
    NUMERIC_VALUE = "numeric"
    LONG_VALUE = "too long"
    DUPLICATE_VALUE = "a duplicate of a value already listed"
    TOO_FEW_VALUES = "fewer than two distinct values"
    ONE_VALUE_TAKEN = "every pivot took the same value"
    ASSIGNED_TWICE = "pivots assigned to more than one value"
    NOT_ASSIGNED = "pivots not assigned"
    UNKNOWN_PIVOTS = "unknown pivot numbers"


@dataclass(frozen=True)
class Problem:
    """One structural problem: its kind and the one-line message that explains it."""

    kind: ProblemKind
    message: str


def find_split_problems(split: CriterionSplit, *, pivot_count: int, ancestors: list[str],
                        task: str = "") -> list[Problem]:
    """Every structural problem of ``split`` (empty list when it is acceptable).

    Checks: the criterion is non-empty and does not repeat an ancestor's; values are non-empty, not vague,
    not numbers, at most :data:`MAX_VALUE_WORDS` words, and distinct after normalization; there are at least
    two and the pivots take at least two of them; every pivot number 1..``pivot_count`` is
    assigned to exactly one value and no other number appears.
    """
    problems: list[Problem] = []

    def add(kind: ProblemKind, message: str) -> None:
        problems.append(Problem(kind, message))

    if not normalize(split.criterion):
        add(ProblemKind.EMPTY_CRITERION, "empty criterion")
    elif (ancestor := repeats_ancestor(split.criterion, ancestors)) is not None:
        add(ProblemKind.REPEATS_ANCESTOR, f"criterion {split.criterion!r} repeats the ancestor criterion {ancestor!r}")
    values = [normalize(g.value) for g in split.groups]
    if any(not v for v in values):
        add(ProblemKind.EMPTY_VALUE, "empty value")
    if vague := sorted({v for v in values if v in VAGUE_VALUES}):
        add(ProblemKind.VAGUE_VALUE, f"vague values {vague}")
    if restating := sorted({v for v in values if restates_task(v, task_words(task))}):
        add(ProblemKind.RESTATES_TASK, f"values {restating} restate the task instead of naming a part of it")
    if numeric := sorted({v for v in values if v and v.replace(" ", "").isdigit()}):
        add(ProblemKind.NUMERIC_VALUE,
            f"numeric values {numeric} (values must be kinds, not quantities or sample numbers)")
    if long := [v for v in values if len(v.split()) > MAX_VALUE_WORDS]:
        add(ProblemKind.LONG_VALUE, f"{len(long)} values longer than {MAX_VALUE_WORDS} words (values must be short)")
    if dupes := sorted(v for v, c in Counter(values).items() if c > 1 and v):
        add(ProblemKind.DUPLICATE_VALUE, f"duplicate values {dupes}")
    if len(set(values)) < 2:
        add(ProblemKind.TOO_FEW_VALUES, "fewer than two distinct values")
    elif sum(1 for g in split.groups if g.samples) < 2:
        add(ProblemKind.ONE_VALUE_TAKEN, "every pivot took the same value (the values do not separate the samples)")
    assigned = Counter(n for g in split.groups for n in g.samples)
    if twice := sorted(n for n, c in assigned.items() if c > 1):
        add(ProblemKind.ASSIGNED_TWICE, f"pivots {twice} assigned to more than one value")
    if missing := sorted(set(range(1, pivot_count + 1)) - set(assigned)):
        add(ProblemKind.NOT_ASSIGNED, f"pivots {missing} not assigned")
    if unknown := sorted(n for n in assigned if not 1 <= n <= pivot_count):
        add(ProblemKind.UNKNOWN_PIVOTS, f"unknown pivot numbers {unknown}")
    return problems


def split_problems(split: CriterionSplit, *, pivot_count: int, ancestors: list[str], task: str = "") -> list[str]:
    """The messages of :func:`find_split_problems` (empty list when ``split`` is acceptable)."""
    return [p.message for p in find_split_problems(split, pivot_count=pivot_count, ancestors=ancestors, task=task)]


def value_problem(value: str, seen: Collection[str], task: frozenset[str] = frozenset()) -> ProblemKind | None:
    """Why ``value`` cannot join a list whose values have the :func:`value_key` s ``seen`` (``None`` if it can):
    empty, vague, only restating the ``task`` words (:func:`task_words`), or a duplicate."""
    norm = normalize(value)
    if not norm:
        return ProblemKind.EMPTY_VALUE
    if norm in VAGUE_VALUES:
        return ProblemKind.VAGUE_VALUE
    if restates_task(value, task):
        return ProblemKind.RESTATES_TASK
    if value_key(value, task) in seen:
        return ProblemKind.DUPLICATE_VALUE
    return None


def screen_values(known: list[str], new: list[str], *,
                  task: str = "") -> tuple[list[str], list[tuple[str, ProblemKind]]]:
    """The values of ``new`` that may join ``known`` (in order, as given) and the others with the reason.

    A value is rejected when it is empty, vague, only restates the ``task``, or repeats a known or an earlier
    new value by :func:`value_key` (so ``"addition problems"`` repeats ``"addition"``).
    """
    words = task_words(task)
    seen = {value_key(v, words) for v in known}
    kept: list[str] = []
    rejected: list[tuple[str, ProblemKind]] = []
    for value in new:
        if (problem := value_problem(value, seen, words)) is not None:
            rejected.append((value, problem))
        else:
            seen.add(value_key(value, words))
            kept.append(value)
    return kept, rejected


def merge_values(known: list[str], new: list[str], *, task: str = "") -> list[str]:
    """``known`` followed by the values of ``new`` that :func:`screen_values` keeps, stripped."""
    return [*known, *(value.strip() for value in screen_values(known, new, task=task)[0])]
