"""DSPy modules of tree building. Each owns its predictor once, so optimizers can find and compile it."""

from __future__ import annotations

from typing import Any

import dspy

from treesynth.signatures import (
    CoverSubspace,
    DetermineCriterion,
    GeneratePivots,
    coverage_type,
    sample_batch_type,
    shaped,
    split_type,
)


class PivotGenerator(dspy.Module):
    """Generates ``count`` pivot samples that illustrate a subspace."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.generate = dspy.Predict(GeneratePivots)

    async def aforward(self, task: str, subspace: list[str], count: int, **call: Any) -> dspy.Prediction:
        """Return ``Prediction(pivots=[...])`` with exactly ``count`` strings."""
        signature = shaped(self.generate.signature, "pivots", sample_batch_type(count))
        pred = await self.generate.acall(signature=signature, task=task, subspace=subspace, **call)
        return dspy.Prediction(pivots=[str(p) for p in pred.pivots.items])


class CriterionDeterminer(dspy.Module):
    """Chooses one criterion and groups the pivots by its values."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.determine = dspy.Predict(DetermineCriterion)

    async def aforward(self, task: str, subspace: list[str], pivots: list[str], excluded_criteria: list[str],
                       max_groups: int, **call: Any) -> dspy.Prediction:
        """Return ``Prediction(split=CriterionSplit)`` with at most ``max_groups`` groups."""
        signature = shaped(self.determine.signature, "split", split_type(max_groups))
        pred = await self.determine.acall(signature=signature, task=task, subspace=subspace, pivots=pivots,
                                          excluded_criteria=excluded_criteria, **call)
        return dspy.Prediction(split=pred.split)


class SubspaceCoverer(dspy.Module):
    """Completes a criterion's value list and says whether its value space is unbounded."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.cover = dspy.Predict(CoverSubspace)

    async def aforward(self, task: str, subspace: list[str], criterion: str, known_values: list[str],
                       max_new: int, **call: Any) -> dspy.Prediction:
        """Return ``Prediction(coverage=Coverage)`` adding at most ``max_new`` values."""
        signature = shaped(self.cover.signature, "coverage", coverage_type(max_new))
        pred = await self.cover.acall(signature=signature, task=task, subspace=subspace, criterion=criterion,
                                      known_values=known_values, **call)
        return dspy.Prediction(coverage=pred.coverage)
