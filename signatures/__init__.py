"""Typed DSPy signatures, one per LLM step of TreeSynth. No logic, no I/O.

The docstring of each signature is its instruction (what optimizers rewrite). Output lists are wrapped
in pydantic models so that count limits reach the JSON schema and therefore the decoding grammar;
:mod:`treesynth.signatures.shapes` builds those models for a given width.
"""

from treesynth.signatures.baselines import EvolveSample, GeneratePersonas
from treesynth.signatures.coverage import Coverage, CoverSubspace
from treesynth.signatures.criterion import CriterionSplit, DetermineCriterion, ValueGroup
from treesynth.signatures.pivots import GeneratePivots
from treesynth.signatures.routing import NONE_FITS, Assignment, Assignments, RouteSamples
from treesynth.signatures.shapes import (
    assignments_type,
    coverage_type,
    record_type,
    sample_batch_type,
    shaped,
    split_type,
)
from treesynth.signatures.synthesis import SynthesizeLeaf

SIGNATURE_VERSION = "2"
"""Bumped whenever a signature's fields change; compiled programs record it."""

__all__ = [
    "NONE_FITS",
    "SIGNATURE_VERSION",
    "Assignment",
    "Assignments",
    "CoverSubspace",
    "Coverage",
    "CriterionSplit",
    "DetermineCriterion",
    "EvolveSample",
    "GeneratePersonas",
    "GeneratePivots",
    "RouteSamples",
    "SynthesizeLeaf",
    "ValueGroup",
    "assignments_type",
    "coverage_type",
    "record_type",
    "sample_batch_type",
    "shaped",
    "split_type",
]
