"""The leaf synthesis objective: validity × within-batch diversity × novelty against sibling leaves."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dspy
import numpy as np

from treesynth.gate import SampleGate
from treesynth.metrics.embedding import vendi_score
from treesynth.models import normalize
from treesynth.optimizers.node_objective import (
    NEAR_DUPLICATE,
    Judgement,
    NodeObjective,
    TextEmbedding,
    clip,
    content_words,
    sample_text,
)


@dataclass(frozen=True)
class _Batch:
    """One leaf answer, split into valid samples and the reasons the others are invalid."""

    texts: list[str]
    valid: list[str]
    invalid: list[tuple[int, str]]


class LeafObjective(NodeObjective):
    """Leaf synthesis: validity × within-batch diversity × novelty against sibling leaves.

    * validity: ``min(returned, count) / count`` × the share of samples that are valid: passing the run's
      sample gate (:class:`~treesynth.gate.SampleGate`: language of at least ``min_words`` words with
      letters, so number dumps, file names and single tokens do not count, and no schema debris or echo
      of the task or the path's constraints), not a copy of an ``avoid`` sample, and not naming a sibling
      leaf's value more than this leaf's own (adherence to the path);
    * within-batch diversity: Vendi score of the valid samples divided by their number (the effective
      share of distinct samples; a repeated sample lowers it);
    * novelty: mean over valid samples of ``1 − max cosine similarity`` to the ``references`` label
      (samples of sibling leaves), 1 without references.
    """

    name = "leaf"
    output = "samples"

    def __init__(self, embedding: TextEmbedding | None = None, *, min_words: int = 4) -> None:
        """Create the objective; samples shorter than ``min_words`` words are invalid."""
        super().__init__(embedding)
        self.min_words = min_words

    def judge(self, example: dspy.Example, prediction: Any) -> Judgement:
        """See the class docstring."""
        count = int(example.count)
        batch = self._check(example, list(prediction.samples))
        returned = len(batch.texts)
        validity = (min(returned, count) / count) * (len(batch.valid) / returned if returned else 0.0)
        within, dupes = self._within(batch.valid)
        novelty, close = self._novelty(batch.valid, [str(r) for r in example.get("references", [])])
        score = validity * within * novelty
        notes = self._notes(count, returned, batch, dupes, close)
        head = (f"Score {score:.2f} = validity {validity:.2f} × within-batch diversity {within:.2f} × novelty "
                f"against sibling leaves {novelty:.2f}.")
        tail = " ".join(notes) or "All samples are valid, distinct and new."
        return Judgement(score, f"{head} {tail}", {"validity": validity, "within": within, "novelty": novelty})

    def _check(self, example: dspy.Example, samples: list[Any]) -> _Batch:
        fields = [str(f[0]) if isinstance(f, list | tuple) else str(f) for f in example.get("fields", ())]
        gate = SampleGate(task=str(example.get("task", "")), fields=tuple(fields), min_words=self.min_words)
        subspace = [str(line) for line in example.get("subspace", [])]
        texts = [sample_text(s) for s in samples]
        avoid = {normalize(str(a)) for a in example.get("avoid", [])}
        own = content_words(str(example.get("own_value", "")))
        siblings = [(str(v), content_words(str(v)) - own) for v in example.get("sibling_values", [])]
        valid: list[str] = []
        invalid: list[tuple[int, str]] = []
        for i, (sample, text) in enumerate(zip(samples, texts, strict=True)):
            words = content_words(text)
            named = [v for v, sib in siblings if sib and sib <= words]
            rejected = gate.check(sample if isinstance(sample, Mapping) else text, subspace)
            if rejected is not None:
                invalid.append((i, rejected))
            elif normalize(text) in avoid:
                invalid.append((i, "repeats a sample from `avoid`"))
            elif named and not (own and own <= words):
                invalid.append((i, f"is about the sibling value {named[0]!r}, not this leaf's "
                                   f"{example.get('own_value')!r}"))
            else:
                valid.append(text)
        return _Batch(texts, valid, invalid)

    def _within(self, valid: list[str]) -> tuple[float, list[tuple[str, str, float]]]:
        if len(valid) < 2:
            return (1.0 if valid else 0.0), []
        vectors = self.embedding(valid)
        within = min(1.0, vendi_score(vectors) / len(valid))
        sim = vectors @ vectors.T
        dupes = [(valid[i], valid[j], float(sim[i, j])) for i, j in itertools.combinations(range(len(valid)), 2)
                 if sim[i, j] >= NEAR_DUPLICATE]
        return within, dupes

    def _novelty(self, valid: list[str], references: list[str]) -> tuple[float, list[tuple[str, str, float]]]:
        if not valid or not references:
            return 1.0, []
        vectors = self.embedding(valid + references)
        sim = vectors[: len(valid)] @ vectors[len(valid):].T
        nearest = sim.max(axis=1)
        close = [(valid[i], references[int(np.argmax(sim[i]))], float(nearest[i]))
                 for i in range(len(valid)) if nearest[i] >= NEAR_DUPLICATE]
        return float(np.mean(1.0 - np.clip(nearest, 0.0, 1.0))), close

    @staticmethod
    def _notes(count: int, returned: int, batch: _Batch, dupes: list[tuple[str, str, float]],
               close: list[tuple[str, str, float]]) -> list[str]:
        notes: list[str] = []
        if returned != count:
            notes.append(f"Problem: {returned} samples returned, {count} requested.")
        notes += [f"Problem: sample {i + 1} {why}: {clip(batch.texts[i])!r}." for i, why in batch.invalid]
        if dupes:
            pairs = "; ".join(f"{clip(a, 50)!r} ≈ {clip(b, 50)!r}" for a, b, _ in dupes[:3])
            notes.append(f"Problem: {len(dupes)} pair(s) of samples in the batch are duplicates or near-duplicates "
                         f"(similarity ≥ {NEAR_DUPLICATE}), even if case or punctuation differ: {pairs}.")
        if close:
            a, b, s = close[0]
            notes.append(f"Problem: {len(close)} sample(s) nearly repeat a sibling leaf's sample, e.g. "
                         f"{clip(a, 50)!r} ≈ {clip(b, 50)!r} (similarity {s:.2f}).")
        return notes
