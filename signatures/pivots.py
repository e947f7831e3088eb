"""Pivot generation: example samples that show what a subspace contains."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, Field


class PivotBatch(BaseModel):
    """Placeholder output type; the run replaces it with an exact-count batch (see ``shapes``)."""

    items: list[str] = Field(min_length=1)


class GeneratePivots(dspy.Signature):
    """Write realistic, varied example samples for the task that all lie inside the given subspace.

    Every sample must satisfy every constraint listed in `subspace`. Beyond those constraints, make the
    samples differ from each other as much as possible (topic, setting, difficulty, form, length), so
    that they reveal the different kinds of data the subspace contains. Return only the samples.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' from the root; empty at the root")
    pivots: PivotBatch = dspy.OutputField(desc="the example samples")
