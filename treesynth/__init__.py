"""treesynth: tree-guided synthesis of diverse datasets from one sentence (TreeSynth on DSPy).

Quick start::

    from treesynth import RunConfig, TreeSynth

    config = RunConfig().with_overrides({"model.model": "test/fake", "synthesis.samples": 50})
    result = TreeSynth(config).run("GSM8K-style grade-school math word problems", "runs/gsm")
    print(result.summary["counts"])

Heavy names (the pipeline pulls in DSPy) load on first access so that ``treesynth --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must never fetch its price list

if TYPE_CHECKING:
    from treesynth.config import ModelConfig, RunConfig, SynthesisConfig, TreeConfig
    from treesynth.errors import ConfigError, GenerationError, ProviderError, TreeSynthError
    from treesynth.models import FirstSplit, Node, PathStep, Sample, Task, Tree
    from treesynth.pipeline import Progress, RunResult, TreeSynth
    from treesynth.program import TreeSynthProgram

__version__ = "0.1.0"

_EXPORTS = {
    "ModelConfig": "treesynth.config", "RunConfig": "treesynth.config", "SynthesisConfig": "treesynth.config",
    "TreeConfig": "treesynth.config", "ConfigError": "treesynth.errors", "GenerationError": "treesynth.errors",
    "ProviderError": "treesynth.errors", "TreeSynthError": "treesynth.errors", "FirstSplit": "treesynth.models",
    "Node": "treesynth.models", "PathStep": "treesynth.models", "Sample": "treesynth.models",
    "Task": "treesynth.models", "Tree": "treesynth.models", "Progress": "treesynth.pipeline",
    "RunResult": "treesynth.pipeline", "TreeSynth": "treesynth.pipeline", "TreeSynthProgram": "treesynth.program",
}
__all__ = [
    "ConfigError", "FirstSplit", "GenerationError", "ModelConfig", "Node", "PathStep", "Progress", "ProviderError",
    "RunConfig", "RunResult", "Sample", "SynthesisConfig", "Task", "Tree", "TreeConfig", "TreeSynth",
    "TreeSynthError", "TreeSynthProgram",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'treesynth' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
