"""Leaf synthesis: new samples conditioned on a root-to-leaf path."""

from __future__ import annotations

import dspy

from treesynth.signatures.pivots import SampleList


class SynthesizeLeaf(dspy.Signature):
    """Write new samples for the task that satisfy EVERY constraint in `subspace`.

    Each sample is one complete data point exactly as it would appear in the dataset (for a word
    problem: the whole problem text), never a number, a label or a title. Samples differ from each
    other and from every sample in `avoid`: vary wording, entities, numbers and structure.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    subspace: list[str] = dspy.InputField(desc="constraints 'criterion: value' the samples must all satisfy")
    avoid: list[str] = dspy.InputField(desc="existing samples that must not be repeated (may be empty)")
    batch: SampleList = dspy.OutputField()
