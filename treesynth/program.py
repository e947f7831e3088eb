"""The TreeSynth prompt program: the four DSPy modules whose instructions can be compiled together."""

from __future__ import annotations

import dspy

from treesynth.synthesis.leaf import LeafSynthesizer
from treesynth.tree.builder import TreeModules
from treesynth.tree.modules import CriterionDeterminer, PivotGenerator, SubspaceCoverer


class TreeSynthProgram(dspy.Module):
    """Pivot generation, criterion determination, subspace coverage and leaf synthesis.

    ``save``/``load`` (DSPy JSON state) carry compiled instructions; LMs are attached at run time.
    """

    def __init__(self) -> None:
        """Create the four modules with their default (uncompiled) instructions."""
        super().__init__()
        self.pivots = PivotGenerator()
        self.criterion = CriterionDeterminer()
        self.coverage = SubspaceCoverer()
        self.leaf = LeafSynthesizer()

    def tree_modules(self) -> TreeModules:
        """The modules tree building uses."""
        return TreeModules(pivots=self.pivots, criterion=self.criterion, coverage=self.coverage)
