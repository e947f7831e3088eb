"""Six small tasks with a predefined first split: the node examples of compile tests and benchmarks.

Each split's values are known, so a coverage example can hold half of them out and check that a module
recalls them (see :class:`treesynth.optimizers.objectives.CoverageObjective`).
"""

from __future__ import annotations

from pathlib import Path

from treesynth.io import read_yaml_mapping
from treesynth.models import FirstSplit, Task


def _read() -> dict[str, tuple[str, list[str]]]:
    raw = read_yaml_mapping(Path(__file__).with_name("split_tasks.yaml"), "task table", "task -> {criterion: values}")
    return {task: next(iter(split.items())) for task, split in raw.items()}


SPLIT_TASKS: dict[str, tuple[str, list[str]]] = _read()
"""Task description -> (criterion, values) of its first split (from ``split_tasks.yaml``)."""


def split_tasks() -> list[Task]:
    """The :data:`SPLIT_TASKS` as tasks, in their order."""
    return [Task(description=description, first_split=FirstSplit(criterion=criterion, values=values))
            for description, (criterion, values) in SPLIT_TASKS.items()]
