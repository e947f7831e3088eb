"""Per-node diversity objectives for DSPy optimizers ("node as example", the prediction is the set).

Each objective scores one module's answer at one tree node and explains the score in words, so GEPA can
reflect on it:

* :class:`CriterionObjective` -- are the criterion's values mutually exclusive and do they cover the pivots?
* :class:`CoverageObjective` -- do the added values extend the value space without overlapping?
* :class:`LeafObjective` -- within-batch diversity × novelty against sibling leaves × validity.

Validity always multiplies the score, so nothing can learn "diversity through garbage". Objectives are
plain objects built from explicit arguments; they hold no LM and no global state. An objective instance
is the GEPA metric itself (``objective(gold, pred, trace, pred_name, pred_trace)`` returns
``dspy.Prediction(score=..., feedback=...)``); :meth:`NodeObjective.scalar` is the float metric other
optimizers want.
"""

from __future__ import annotations

from typing import Any

import dspy
import numpy as np

from treesynth.optimizers.leaf_objective import LeafObjective
from treesynth.optimizers.node_objective import (
    OVERLAP,
    RECALLED,
    Judgement,
    NodeObjective,
    TextEmbedding,
    max_offdiagonal,
    same_value,
    sample_text,
)
from treesynth.tree.checks import ProblemKind, find_split_problems, screen_values

__all__ = ["OBJECTIVES", "CoverageObjective", "CriterionObjective", "Judgement", "LeafObjective", "NodeObjective",
           "TextEmbedding", "make_objective", "sample_text"]


_GATES = frozenset({ProblemKind.EMPTY_CRITERION, ProblemKind.REPEATS_ANCESTOR, ProblemKind.EMPTY_VALUE,
                    ProblemKind.VAGUE_VALUE, ProblemKind.DUPLICATE_VALUE, ProblemKind.TOO_FEW_VALUES,
                    ProblemKind.UNKNOWN_PIVOTS})
"""The split problems that make it unusable (valid 0); :data:`_HINTS` are scored by ``assigned_once``."""
_HINTS = {ProblemKind.ASSIGNED_TWICE: "values must be mutually exclusive",
          ProblemKind.NOT_ASSIGNED: "the values must cover every pivot"}


class CriterionObjective(NodeObjective):
    """Criterion determination: exclusivity of the values × share of pivots assigned exactly once, gated.

    The problems come from the tree's own check (:func:`~treesynth.tree.checks.find_split_problems`). The
    gate is 0 when the split is structurally unusable (empty or vague values, duplicate values after
    normalization, fewer than two values, a criterion repeating an ancestor's, unknown pivot numbers).
    Exclusivity is ``1 − max cosine similarity`` between two values' embeddings.
    """

    name = "criterion"
    output = "split"

    def judge(self, example: dspy.Example, prediction: Any) -> Judgement:
        """See the class docstring."""
        split = prediction.split
        pivots = len(example.pivots)
        values = [str(g.value) for g in split.groups]
        problems = [p for p in find_split_problems(split, pivot_count=pivots, ancestors=list(example.excluded_criteria))
                    if p.kind in _GATES or p.kind in _HINTS]
        counts = {n: 0 for n in range(1, pivots + 1)}
        for n in (n for g in split.groups for n in g.samples):
            if n in counts:
                counts[n] += 1
        once = sum(1 for c in counts.values() if c == 1) / max(pivots, 1)
        exclusivity, pair = self._exclusivity(values)
        gate = 0.0 if any(p.kind in _GATES for p in problems) else 1.0
        score = gate * exclusivity * once
        notes = [f"{p.message} ({_HINTS[p.kind]})" if p.kind in _HINTS else p.message for p in problems]
        if pair is not None and 1 - exclusivity >= OVERLAP:
            notes.append(f"values {values[pair[0]]!r} and {values[pair[1]]!r} overlap "
                         f"(similarity {1 - exclusivity:.2f}); choose values that cannot both hold")
        head = (f"Score {score:.2f} = valid {gate:.0f} × exclusivity {exclusivity:.2f} × pivots assigned exactly "
                f"once {once:.2f}. Criterion {split.criterion!r} with values {values}.")
        tail = " ".join(f"Problem: {n}." for n in notes) or "The split is valid, exclusive and covers every pivot."
        return Judgement(score, f"{head} {tail}", {"valid": gate, "exclusivity": exclusivity, "assigned_once": once})

    def _exclusivity(self, values: list[str]) -> tuple[float, tuple[int, int] | None]:
        if len(values) < 2:
            return 0.0, None
        top, pair = max_offdiagonal(self.embedding(values))
        return float(np.clip(1.0 - top, 0.0, 1.0)), pair


class CoverageObjective(NodeObjective):
    """Subspace coverage: validity × novelty of the added values × how far they extend the known list.

    * validity: share of added values that the tree would keep (:func:`~treesynth.tree.checks.screen_values`:
      non-empty, not vague, not restating the task, not a duplicate of a known or an earlier added value);
    * novelty: mean over valid added values of ``1 − max cosine similarity`` to the known and the other
      added values (overlapping values score low);
    * extent: ``min(1, valid added / expected) × (0.25 + 0.75 × recall)``, where ``expected`` is the number
      of values the grown tree found beyond the known ones (the example's ``held_out`` label, capped at
      ``max_new``) and *recall* is the share of those held-out values matched by an added value (equal after
      normalization, one's words containing the other's, or cosine similarity >= ``RECALLED``); 1 when the
      tree found none, so adding nothing to a complete list is right. Recall ties the added values to the
      criterion: values of another criterion or task (e.g. copied from a demo) are valid and novel but
      recall nothing, and keep only the 0.25 floor that right values the tree did not find also keep.
    """

    name = "coverage"
    output = "coverage"

    def judge(self, example: dspy.Example, prediction: Any) -> Judgement:
        """See the class docstring."""
        known = [str(v) for v in example.known_values]
        added = [str(v) for v in prediction.coverage.new_values]
        valid, rejected = screen_values(known, added, task=str(example.get("task", "")))
        validity = len(valid) / len(added) if added else 1.0
        novelty, overlaps = self._novelty(known, valid)
        held_out = [str(v) for v in example.get("held_out", [])]
        expected = min(len(held_out), int(example.max_new))
        recalled = self._recalled(held_out, valid)
        recall = len(recalled) / len(held_out) if held_out else 1.0
        extent = min(1.0, len(valid) / expected) * (0.25 + 0.75 * recall) if expected else 1.0
        score = validity * novelty * extent
        notes = [f"{v!r} is {why}" for v, why in rejected]
        notes += [f"{a!r} overlaps {b!r} (similarity {s:.2f})" for a, b, s in overlaps]
        if expected and len(valid) < expected:
            notes.append(f"only {len(valid)} valid new values, but the space has about {expected} more "
                         f"(for example {held_out[:3]}); list every missing value")
        if held_out and recall < 1.0:
            missed = [v for v in held_out if v not in recalled]
            notes.append(f"the added values recall {len(recalled)} of {len(held_out)} values of {example.criterion!r} "
                         f"that the space holds (missed e.g. {missed[:3]}); add values of this criterion for this "
                         "task, not of another")
        head = (f"Score {score:.2f} = validity {validity:.2f} × novelty {novelty:.2f} × extent {extent:.2f} "
                f"(recall {recall:.2f}). "
                f"Criterion {example.criterion!r}: known {known}, added {added}.")
        tail = " ".join(f"Problem: {n}." for n in notes) or "The added values extend the space without overlap."
        return Judgement(score, f"{head} {tail}", {"validity": validity, "novelty": novelty, "extent": extent,
                                                   "recall": recall})

    def _recalled(self, held_out: list[str], added: list[str]) -> list[str]:
        """The held-out values that some added value matches (see the class docstring)."""
        if not held_out or not added:
            return []
        vectors = self.embedding(held_out + added)
        sim = vectors[: len(held_out)] @ vectors[len(held_out):].T
        return [value for i, value in enumerate(held_out)
                if any(same_value(value, other) or sim[i, j] >= RECALLED for j, other in enumerate(added))]

    def _novelty(self, known: list[str], valid: list[str]) -> tuple[float, list[tuple[str, str, float]]]:
        if not valid:
            return 1.0, []
        texts = known + valid
        vectors = self.embedding(texts)
        sim = vectors @ vectors.T
        np.fill_diagonal(sim, -np.inf)
        rows = sim[len(known):]
        nearest = rows.max(axis=1) if len(texts) > 1 else np.zeros(len(valid))
        overlaps = [(valid[i], texts[int(np.argmax(rows[i]))], float(nearest[i]))
                    for i in range(len(valid)) if nearest[i] >= OVERLAP]
        return float(np.mean(1.0 - np.clip(nearest, 0.0, 1.0))), overlaps


OBJECTIVES: dict[str, type[NodeObjective]] = {
    "criterion": CriterionObjective,
    "coverage": CoverageObjective,
    "leaf": LeafObjective,
}
"""The objective class of each compilable module (pivot generation has none)."""


def make_objective(module: str, embedding: TextEmbedding | None = None) -> NodeObjective:
    """The objective for ``module`` (``criterion``, ``coverage`` or ``leaf``)."""
    return OBJECTIVES[module](embedding)
