"""Leaf synthesis: new samples conditioned on a root-to-leaf path."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, Field


class SampleBatch(BaseModel):
    """Placeholder output type; the run replaces it with an exact-count batch (see ``shapes``)."""

    items: list[str] = Field(min_length=1)


class SynthesizeLeaf(dspy.Signature):
    """Write new, high-quality samples for the task that satisfy EVERY constraint in `subspace`.

    Each sample must be complete and self-contained, different from the other samples in the batch and
    from every sample in `avoid`. Vary wording, entities, numbers and structure across samples.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' the samples must all satisfy")
    avoid: list[str] = dspy.InputField(desc="existing samples that must not be repeated (may be empty)")
    samples: SampleBatch = dspy.OutputField()
