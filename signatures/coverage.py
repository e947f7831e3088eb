"""Subspace coverage: complete a criterion's value list so that it exhausts the subspace."""

from __future__ import annotations

from typing import Annotated

import dspy
from pydantic import BaseModel, Field


class Coverage(BaseModel):
    """The values missing from the known list, and whether the value space is effectively unbounded."""

    new_values: list[Annotated[str, Field(max_length=80)]] = Field(
        description="values not yet listed, mutually exclusive with the known ones")
    unbounded: bool = Field(description="true if the criterion has too many possible values to list them all")


class CoverSubspace(dspy.Signature):
    """Complete the list of values of a criterion so that together they cover the whole subspace.

    Add only values that are missing from `known_values`, are mutually exclusive with them and with each
    other, are specific (no "other" or "misc"), and fit the task and the subspace. If the known values
    already cover the space, add nothing. Set `unbounded` when the criterion has so many possible values
    (names, topics, numbers...) that no short list could exhaust it.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' from the root; empty at the root")
    criterion: str = dspy.InputField(desc="the criterion whose values are being completed")
    known_values: list[str] = dspy.InputField(desc="values found so far")
    coverage: Coverage = dspy.OutputField()
