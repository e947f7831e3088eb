"""Routing: assign existing samples to the values of a node's criterion (batched)."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, Field

NONE_FITS = "none fits"
"""The explicit option for a sample that no value describes."""


class Assignment(BaseModel):
    """One sample (by its 1-based number) and the value it takes."""

    sample: int = Field(description="the sample's number")
    value: str = Field(description="one of the options, exactly as written")


class Assignments(BaseModel):
    """Placeholder output type; the run replaces it with one constrained to the node's options."""

    items: list[Assignment]


class RouteSamples(dspy.Signature):
    """Assign every numbered sample to the ONE option of the criterion that describes it best.

    Answer with exactly one assignment per sample number, each number exactly once, and copy the option
    text exactly. Choose "none fits" only when no option applies to the sample at all.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' every sample already satisfies")
    criterion: str = dspy.InputField(desc="the criterion to classify by")
    options: list[str] = dspy.InputField(desc="the criterion's values, plus 'none fits'")
    samples: list[str] = dspy.InputField(desc="the samples, numbered from 1 in order")
    assignments: Assignments = dspy.OutputField()
