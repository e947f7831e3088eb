"""Output models whose list limits depend on the run's configuration.

Limits on a top-level ``list[str]`` output never reach DSPy's JSON schema, so each list is wrapped in a
model. Models are built once per distinct limit (memoized; pure functions of their arguments).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

import dspy
from pydantic import BaseModel, Field, create_model

from treesynth.signatures.coverage import Coverage
from treesynth.signatures.criterion import CriterionSplit, ValueGroup
from treesynth.signatures.routing import Assignment, Assignments


@cache
def shaped(signature: type[dspy.Signature], field: str, type_: type[BaseModel]) -> type[dspy.Signature]:
    """``signature`` with output ``field`` retyped; memoized, since building a signature class is costly.

    Keyed on the signature class itself, so a compiled program (new instructions = new class) gets its
    own entry.
    """
    return signature.with_updated_fields(field, type_=type_)  # type: ignore[no-any-return]


@cache
def record_type(fields: tuple[tuple[str, str], ...]) -> type[BaseModel]:
    """A record model with one string field per ``(name, description)`` pair."""
    spec: dict[str, Any] = {name: (str, Field(description=desc or name)) for name, desc in fields}
    return create_model("Record", **spec)


@cache
def sample_batch_type(count: int, fields: tuple[tuple[str, str], ...] = ()) -> type[BaseModel]:
    """``{"items": [...]}`` holding exactly ``count`` strings, or records when ``fields`` are given."""
    item: object = record_type(fields) if fields else str
    return create_model(
        f"Batch{count}",
        items=(list[item], Field(min_length=count, max_length=count)),  # type: ignore[valid-type]
    )


@cache
def split_type(max_groups: int) -> type[CriterionSplit]:
    """A criterion split with between 2 and ``max_groups`` value groups."""
    return create_model(
        f"Split{max_groups}",
        __base__=CriterionSplit,
        groups=(list[ValueGroup], Field(min_length=2, max_length=max_groups)),
    )


@cache
def coverage_type(max_new: int) -> type[Coverage]:
    """A coverage answer adding at most ``max_new`` values."""
    return create_model(
        f"Coverage{max_new}",
        __base__=Coverage,
        new_values=(list[Annotated[str, Field(max_length=80)]], Field(max_length=max_new)),
    )


@cache
def assignments_type(options: tuple[str, ...], count: int) -> type[Assignments]:
    """Exactly ``count`` assignments whose value is one of ``options`` (an enum in the JSON schema)."""
    choice = Literal[options]  # type: ignore[valid-type]
    item = create_model("Assignment", __base__=Assignment, value=(choice, Field(description="one of the options")))
    return create_model(
        f"Assignments{count}",
        __base__=Assignments,
        items=(list[item], Field(min_length=count, max_length=count)),
    )
