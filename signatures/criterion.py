"""Criterion determination in two steps: name ONE criterion and its values, then label every pivot.

Splitting the step lets the second call's answer be constrained to the proposed values (an enum in the
schema, so the grammar or structured output guarantees every pivot one allowed value); small models that
fail the single-call form ("group these samples by numbers") manage both halves. The module combines the
two answers into a :class:`CriterionSplit`, the shape the tree's checks and the optimizer objectives read.

Neither step is shown the task sentence: small models then answer with the task's own words ("grade-school
math", "word problems") as values. The pivots and the subspace say what the data is; the task still
reaches the checks, which reject values that merely restate it.
"""

from __future__ import annotations

from typing import Annotated

import dspy
from pydantic import BaseModel, Field

CRITERION_WORDS = 60
VALUE_CHARS = 60


class ValueGroup(BaseModel):
    """One value of the criterion and the pivots (1-based numbers) that take it."""

    value: str = Field(max_length=80, description="a short, specific value of the criterion")
    samples: list[int] = Field(description="1-based numbers of the pivot samples with this value")


class CriterionSplit(BaseModel):
    """A criterion and its values, each pivot assigned to exactly one value."""

    criterion: str = Field(max_length=80, description="the single dimension that best separates the samples")
    groups: list[ValueGroup] = Field(min_length=2)


class CriterionProposal(BaseModel):
    """Placeholder output type; runs replace it with one bounded by the tree's width (``shapes``)."""

    criterion: str = Field(max_length=CRITERION_WORDS, description="the dimension, in 1 to 4 words")
    values: list[Annotated[str, Field(max_length=VALUE_CHARS)]] = Field(
        min_length=2, description="its values: short words or phrases, mutually exclusive, never numbers or copies "
                                  "of the samples")


class PivotLabels(BaseModel):
    """Placeholder output type; runs replace it with one whose labels are the proposed values (``shapes``)."""

    labels: list[str] = Field(min_length=1, description="the value of each sample, in the order of the samples")


class DetermineCriterion(dspy.Signature):
    """Name the ONE most significant dimension along which the example samples differ, and its values.

    Each value describes some of the samples but not the others, so the values sort the samples into
    groups. Good dimensions describe the kind of sample (for example its topic, skill or operation, setting,
    difficulty, format or style), not a quantity that appears in it.
    Rules: one dimension, different from every criterion in `excluded_criteria`; at least two values,
    mutually exclusive, specific and short (a few words each); no vague values such as "other", "misc"
    or "mixed", no combined values such as "a and b" or "a/b", and no values that are sample numbers or
    copies of the samples.
    """

    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' every sample already satisfies")
    pivots: list[str] = dspy.InputField(desc="the example samples")
    excluded_criteria: list[str] = dspy.InputField(desc="criteria already used above this node")
    proposal: CriterionProposal = dspy.OutputField()


class ClassifyPivots(dspy.Signature):
    """For each example sample, in order, give the value of the criterion that the sample has."""

    criterion: str = dspy.InputField(desc="the criterion")
    values: list[str] = dspy.InputField(desc="the criterion's values; answer with these exactly")
    pivots: list[str] = dspy.InputField(desc="the example samples")
    classification: PivotLabels = dspy.OutputField()
