"""Baselines that TreeSynth is compared with, on the same LM layer, store and output format."""

from treesynth.baselines.methods import EVOL_OPERATIONS, METHODS, Baseline, Evolver, PersonaWriter

__all__ = ["EVOL_OPERATIONS", "METHODS", "Baseline", "Evolver", "PersonaWriter"]
