"""Six small tasks with a predefined first split: the node examples of compile tests and benchmarks.

Each split's values are known, so a coverage example can hold half of them out and check that a module
recalls them (see :class:`treesynth.optimizers.objectives.CoverageObjective`).
"""

from __future__ import annotations

from treesynth.models import FirstSplit, Task

SPLIT_TASKS: dict[str, tuple[str, list[str]]] = {
    "GSM8K-style grade-school math word problems": (
        "operation", ["addition", "subtraction", "multiplication", "division", "fractions", "percentages"]),
    "Trivia questions about world geography": (
        "continent", ["Africa", "Asia", "Europe", "North America", "South America", "Oceania"]),
    "Simple Python programming exercises": (
        "topic", ["strings", "lists", "dictionaries", "loops", "functions", "recursion"]),
    "Short customer-support questions about a bank account": (
        "topic", ["card", "loan", "transfer", "deposit", "fees", "login"]),
    "Recipe requests for home cooking": (
        "cuisine", ["Italian", "Mexican", "Indian", "Chinese", "French", "Japanese"]),
    "Quiz questions about sports rules": (
        "sport", ["football", "tennis", "basketball", "cricket", "golf", "swimming"]),
}
"""Task description -> (criterion, values) of its first split."""


def split_tasks() -> list[Task]:
    """The :data:`SPLIT_TASKS` as tasks, in their order."""
    return [Task(description=description, first_split=FirstSplit(criterion=criterion, values=values))
            for description, (criterion, values) in SPLIT_TASKS.items()]
