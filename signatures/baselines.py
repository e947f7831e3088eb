"""Signatures of the baseline methods TreeSynth is compared with (Evol-Instruct, Persona Hub)."""

from __future__ import annotations

import dspy

from treesynth.signatures.pivots import SampleList

PERSONA_ITEM = "one persona each, in one sentence: who the person is and what they care about"
"""What one item of a persona batch is."""


class EvolveSample(dspy.Signature):
    """Evolve the given sample into new samples for the task by applying the operation.

    Each new sample must be complete and self-contained, follow the task, and be clearly different
    from the original sample and from each other.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    sample: str = dspy.InputField(desc="the sample to evolve")
    operation: str = dspy.InputField(desc="how to evolve it")
    batch: SampleList = dspy.OutputField()


class GeneratePersonas(dspy.Signature):
    """List distinct, specific personas who would write or need samples for the task.

    Each persona is one sentence: who the person is and what they care about. Make them as varied as
    possible (age, job, culture, interests, expertise) and different from every persona in `avoid`.
    """

    task: str = dspy.InputField(desc="what the dataset is for")
    avoid: list[str] = dspy.InputField(desc="personas already listed (may be empty)")
    personas: SampleList = dspy.OutputField()
