"""Criterion determination: one criterion that splits the pivots into mutually exclusive values."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, Field


class ValueGroup(BaseModel):
    """One value of the criterion and the pivots (1-based numbers) that take it."""

    value: str = Field(max_length=80, description="a short, specific value of the criterion")
    samples: list[int] = Field(description="1-based numbers of the pivot samples with this value")


class CriterionSplit(BaseModel):
    """A criterion and its values, each pivot assigned to exactly one value."""

    criterion: str = Field(max_length=80, description="the single dimension that best separates the samples")
    groups: list[ValueGroup] = Field(min_length=2)


class DetermineCriterion(dspy.Signature):
    """Find the ONE most significant criterion that distinguishes the numbered pivot samples.

    Group the samples by their value of that criterion. Rules:
    - exactly one criterion, different from every criterion in `excluded_criteria`;
    - values are mutually exclusive, specific and short; no vague values such as "other", "misc",
      "mixed", and no combined values such as "a and b" or "a/b";
    - every pivot sample number appears in exactly one group.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' from the root; empty at the root")
    pivots: list[str] = dspy.InputField(desc="the pivot samples, numbered from 1 in order")
    excluded_criteria: list[str] = dspy.InputField(desc="criteria already used above this node")
    split: CriterionSplit = dspy.OutputField()
