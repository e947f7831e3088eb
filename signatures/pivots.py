"""Pivot generation: example samples that show what a subspace contains."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, Field

SAMPLE_ITEM = "one complete, self-contained sample of the dataset each, written out in full"
"""What one item of a sample batch is (shown to the model beside the list)."""


class SampleList(BaseModel):
    """Placeholder output type; runs replace it with an exact-count batch (see ``shapes.sample_batch_type``)."""

    samples: list[str] = Field(min_length=1, description=SAMPLE_ITEM)


class GeneratePivots(dspy.Signature):
    """Write example data points of the dataset that all lie inside the given subspace.

    Each example is one complete data point exactly as it would appear in the dataset (for a word
    problem: the whole problem text), never a number, a label, a title or a field name. Every example
    satisfies every constraint in `subspace`; beyond those, make the examples differ from each other as
    much as possible (topic, setting, difficulty, form, length).
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' from the root; empty at the root")
    examples: SampleList = dspy.OutputField()
