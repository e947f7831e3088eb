"""Compiling and tuning TreeSynth (issue #6).

* :mod:`treesynth.optimizers.objectives` -- per-node diversity objectives (GEPA feedback metrics);
* :mod:`treesynth.optimizers.examples` -- node example sets from small grown trees;
* :mod:`treesynth.optimizers.stages` -- sync DSPy views of the program's async modules;
* :mod:`treesynth.optimizers.compile` -- :func:`compile_program` (GEPA, MIPROv2, BootstrapFewShot);
* :mod:`treesynth.optimizers.program_io` -- compiled program files that refuse mismatched signatures;
* :mod:`treesynth.optimizers.search_space`, :mod:`treesynth.optimizers.tune`,
  :mod:`treesynth.optimizers.report` -- the Optuna study over the tree shape (diversity vs cost).

Importing this package imports DSPy but not Optuna (the tune modules import it when used).
"""

from treesynth.optimizers.compile import CompileOptions, CompileReport, CompileResult, compile_program
from treesynth.optimizers.objectives import (
    CoverageObjective,
    CriterionObjective,
    Judgement,
    LeafObjective,
    NodeObjective,
    TextEmbedding,
    make_objective,
)
from treesynth.optimizers.program_io import ProgramMismatchError, load_program, save_program

__all__ = [
    "CompileOptions",
    "CompileReport",
    "CompileResult",
    "CoverageObjective",
    "CriterionObjective",
    "Judgement",
    "LeafObjective",
    "NodeObjective",
    "ProgramMismatchError",
    "TextEmbedding",
    "compile_program",
    "load_program",
    "make_objective",
    "save_program",
]
