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
from treesynth.signatures.criterion import VALUE_CHARS, CriterionProposal, PivotLabels
from treesynth.signatures.pivots import SAMPLE_ITEM, SampleList
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
def sample_batch_type(count: int, fields: tuple[tuple[str, str], ...] = (), item: str = SAMPLE_ITEM
                      ) -> type[SampleList]:
    """``{"samples": [...]}`` holding exactly ``count`` strings, or records when ``fields`` are given.

    ``item`` says what one entry is (shown to the model beside the list).
    """
    entry: object = record_type(fields) if fields else str
    return create_model(
        f"Batch{count}",
        __base__=SampleList,
        samples=(list[entry], Field(min_length=count, max_length=count, description=item)),  # type: ignore[valid-type]
    )


@cache
def proposal_type(max_values: int) -> type[CriterionProposal]:
    """A criterion proposal with between 2 and ``max_values`` values."""
    return create_model(
        f"Proposal{max_values}",
        __base__=CriterionProposal,
        values=(list[Annotated[str, Field(max_length=VALUE_CHARS)]],
                Field(min_length=2, max_length=max_values, description=CriterionProposal.model_fields["values"]
                      .description)),
    )


@cache
def labels_type(values: tuple[str, ...], count: int) -> type[PivotLabels]:
    """Exactly ``count`` labels, each one of ``values`` (an enum in the JSON schema, so in the grammar too)."""
    choice = Literal[values]  # type: ignore[valid-type]
    return create_model(
        f"Labels{count}",
        __base__=PivotLabels,
        labels=(list[choice], Field(min_length=count, max_length=count,
                                    description=PivotLabels.model_fields["labels"].description)),
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
