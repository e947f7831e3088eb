"""DSPy modules of tree building. Each owns its predictor once, so optimizers can find and compile it."""

from __future__ import annotations

from typing import Any

import dspy

from treesynth.signatures import (
    ClassifyPivots,
    CoverSubspace,
    CriterionSplit,
    DetermineCriterion,
    GeneratePivots,
    ValueGroup,
    coverage_type,
    labels_type,
    proposal_type,
    sample_batch_type,
    shaped,
)
from treesynth.tree.checks import merge_values


class PivotGenerator(dspy.Module):
    """Generates ``count`` pivot samples that illustrate a subspace."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.generate = dspy.Predict(GeneratePivots)

    async def aforward(self, task: str, subspace: list[str], count: int, **call: Any) -> dspy.Prediction:
        """Return ``Prediction(pivots=[...])`` with exactly ``count`` strings."""
        signature = shaped(self.generate.signature, "examples", sample_batch_type(count))
        pred = await self.generate.acall(signature=signature, task=task, subspace=subspace, **call)
        return dspy.Prediction(pivots=[str(p) for p in pred.examples.samples])


class CriterionDeterminer(dspy.Module):
    """Chooses one criterion and its values, then labels every pivot with one of them (two predictors)."""

    def __init__(self) -> None:
        """Create the module and its two predictors."""
        super().__init__()
        self.determine = dspy.Predict(DetermineCriterion)
        self.classify = dspy.Predict(ClassifyPivots)

    async def aforward(self, task: str, subspace: list[str], pivots: list[str], excluded_criteria: list[str],
                       max_groups: int, **call: Any) -> dspy.Prediction:
        """Return ``Prediction(split=CriterionSplit)`` with at most ``max_groups`` values.

        Every proposed value becomes a group (a value no pivot takes is still a value of the subspace);
        the labels assign each pivot to exactly one of them. ``task`` is accepted for a uniform module
        interface but not shown to the model (see :mod:`treesynth.signatures.criterion`).
        """
        propose = shaped(self.determine.signature, "proposal", proposal_type(max(2, max_groups)))
        proposal = (await self.determine.acall(signature=propose, subspace=subspace, pivots=pivots,
                                               excluded_criteria=excluded_criteria, **call)).proposal
        criterion = " ".join(str(proposal.criterion).split())
        values = merge_values([], [str(v) for v in proposal.values])
        if len(values) < 2:  # nothing to label: the split checks report it
            groups = [ValueGroup(value=v, samples=[]) for v in values]
            return dspy.Prediction(split=CriterionSplit.model_construct(criterion=criterion, groups=groups))
        classify = shaped(self.classify.signature, "classification", labels_type(tuple(values), len(pivots)))
        labels = (await self.classify.acall(signature=classify, criterion=criterion, values=values, pivots=pivots,
                                            **call)).classification.labels
        groups = [ValueGroup(value=v, samples=[n for n, label in enumerate(labels, 1) if label == v]) for v in values]
        return dspy.Prediction(split=CriterionSplit(criterion=criterion, groups=groups))


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
