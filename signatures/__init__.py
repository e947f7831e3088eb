"""Typed DSPy signatures, one per LLM step of TreeSynth. No logic, no I/O.

The docstring of each signature is its instruction (what optimizers rewrite). Output lists are wrapped
in pydantic models so that count limits reach the JSON schema and therefore the decoding grammar;
:mod:`treesynth.signatures.shapes` builds those models for a given width.
"""

from treesynth.signatures.baselines import EvolveSample, GeneratePersonas
from treesynth.signatures.coverage import Coverage, CoverSubspace
from treesynth.signatures.criterion import (
    ClassifyPivots,
    CriterionProposal,
    CriterionSplit,
    DetermineCriterion,
    PivotLabels,
    ValueGroup,
)
from treesynth.signatures.pivots import SAMPLE_ITEM, GeneratePivots, SampleList
from treesynth.signatures.routing import NONE_FITS, Assignment, Assignments, RouteSamples
from treesynth.signatures.shapes import (
    assignments_type,
    coverage_type,
    labels_type,
    proposal_type,
    record_type,
    sample_batch_type,
    shaped,
)
from treesynth.signatures.synthesis import SynthesizeLeaf

SIGNATURE_VERSION = "3"
"""Bumped whenever a signature's fields change; compiled programs record it."""

__all__ = [
    "NONE_FITS",
    "SAMPLE_ITEM",
    "SIGNATURE_VERSION",
    "Assignment",
    "Assignments",
    "ClassifyPivots",
    "CoverSubspace",
    "Coverage",
    "CriterionProposal",
    "CriterionSplit",
    "DetermineCriterion",
    "EvolveSample",
    "GeneratePersonas",
    "GeneratePivots",
    "PivotLabels",
    "RouteSamples",
    "SampleList",
    "SynthesizeLeaf",
    "ValueGroup",
    "assignments_type",
    "coverage_type",
    "labels_type",
    "proposal_type",
    "record_type",
    "sample_batch_type",
    "shaped",
]
