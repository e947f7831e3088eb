"""Data models shared by every layer: tasks, tree nodes, samples and work items.

This module imports nothing from treesynth except :mod:`treesynth.errors`, so every other
module may depend on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from treesynth.errors import ConfigError, first_validation_error
from treesynth.io import read_yaml

_WORD = re.compile(r"[^\w]+", re.UNICODE)


def normalize(text: str) -> str:
    """Canonical form used for duplicate detection: lower case, punctuation and extra spaces removed."""
    return _WORD.sub(" ", text.casefold()).strip()


def stable_hash(*parts: object, length: int = 12) -> str:
    """Deterministic hex digest of ``parts`` (JSON-encoded), stable across processes and machines."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def stable_seed(*parts: object) -> int:
    """A 31-bit seed derived from ``parts``; used so every LLM draw has its own reproducible seed."""
    return int(stable_hash(*parts, length=8), 16) & 0x7FFFFFFF


class PathStep(BaseModel):
    """One constraint on a root-to-leaf path: the node's criterion and the value taken."""

    model_config = ConfigDict(frozen=True)

    criterion: str
    value: str


class FirstSplit(BaseModel):
    """A predefined first-level split (e.g. the seven MATH subjects) that replaces the root's LLM split."""

    model_config = ConfigDict(extra="forbid")

    criterion: str = Field(min_length=1)
    values: list[str] = Field(min_length=2)


class Task(BaseModel):
    """What to synthesize: a one-sentence description, optional structured fields, optional first split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    fields: dict[str, str] = Field(default_factory=dict)
    first_split: FirstSplit | None = None

    @field_validator("description")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the task description is empty; describe the data in one sentence")
        return value

    @field_validator("fields")
    @classmethod
    def _identifiers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"field name {name!r} must be a Python identifier (letters, digits, _)")
        return value

    @property
    def structured(self) -> bool:
        """Whether samples are records with named fields rather than free text."""
        return bool(self.fields)

    @property
    def fingerprint(self) -> str:
        """Hash identifying the task, used to refuse resuming a run directory of another task."""
        return stable_hash(self.model_dump(mode="json"))

    @classmethod
    def from_arg(cls, arg: str) -> Task:
        """Build a task from a CLI argument: a path to a YAML task file, or the sentence itself."""
        path = Path(arg)
        if arg.endswith((".yaml", ".yml")) or (len(arg) < 512 and path.is_file()):
            return cls.from_file(path)
        try:
            return cls(description=arg)
        except ValidationError as exc:
            raise ConfigError(f"task: {first_validation_error(exc, with_key=False)}") from None

    @classmethod
    def from_file(cls, path: Path) -> Task:
        """Load a YAML task file with keys ``description``, optional ``fields`` and ``first_split``."""
        raw = read_yaml(path, "task file", missing_hint="; pass a sentence or an existing YAML file")
        if isinstance(raw, str):
            raw = {"description": raw}
        if not isinstance(raw, dict):
            raise ConfigError(f"task file {path}: expected a mapping with a 'description' key")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"task file {path}: {first_validation_error(exc)}") from None


class Node(BaseModel):
    """A node of the data-space partitioning tree.

    ``value`` is ``None`` at the root, a string for an ordinary child, and the list of candidate values
    (the value pool) for an *infinite* child, from which each generation call draws one value.
    ``criterion`` is the criterion that splits this node's subspace (``None`` on leaves).
    """

    id: str
    depth: int
    value: str | list[str] | None = None
    parent_criterion: str | None = None
    criterion: str | None = None
    infinite: bool = False
    pivots: list[str] = Field(default_factory=list)
    children: list[Node] = Field(default_factory=list)
    leaf_reason: str | None = None
    samples: int = 0
    quota: int = 0

    @property
    def is_leaf(self) -> bool:
        """A node without children is an atomic subspace."""
        return not self.children

    def walk(self) -> Iterator[Node]:
        """Pre-order traversal of this subtree."""
        yield self
        for child in self.children:
            yield from child.walk()

    def leaves(self) -> Iterator[Node]:
        """The leaves of this subtree, in pre-order."""
        return (node for node in self.walk() if node.is_leaf)


class Tree(BaseModel):
    """A complete partitioning tree as written to ``tree.json``."""

    task: Task
    config: dict[str, Any]
    root: Node

    def node_count(self) -> int:
        """Number of nodes, root included."""
        return sum(1 for _ in self.root.walk())


class Sample(BaseModel):
    """One synthesized sample, as written to ``samples.jsonl``."""

    id: str
    leaf_id: str
    path: list[PathStep]
    text: str | None = None
    fields: dict[str, str] | None = None

    def content(self) -> str:
        """The sample's text (free-text tasks) or its fields joined (structured tasks)."""
        if self.text is not None:
            return self.text
        return fields_text(self.fields or {})


def fields_text(fields: Mapping[str, Any]) -> str:
    """A structured sample's fields on one line: ``name: value | name: value``."""
    return " | ".join(f"{k}: {v}" for k, v in fields.items())


class PathSpec(BaseModel):
    """A root-to-node path before infinite values are drawn: each step holds a value or a value pool."""

    model_config = ConfigDict(frozen=True)

    criterion: str
    value: str | None = None
    pool: tuple[str, ...] = ()

    def draw(self, rng_seed: int) -> PathStep:
        """Resolve the step to a concrete value; infinite steps draw from the pool with ``rng_seed``."""
        if self.value is not None:
            return PathStep(criterion=self.criterion, value=self.value)
        return PathStep(criterion=self.criterion, value=self.pool[rng_seed % len(self.pool)])


class LeafWork(BaseModel):
    """A small, serializable unit of leaf synthesis: everything a worker needs to make one call."""

    model_config = ConfigDict(frozen=True)

    leaf_id: str
    path: tuple[PathSpec, ...]
    call_index: int
    count: int
    seed: int

    def concrete_path(self) -> list[PathStep]:
        """The path with every infinite step resolved by this work item's seed."""
        return [step.draw(stable_seed(self.seed, i)) for i, step in enumerate(self.path)]
