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

import abc
import itertools
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy
import numpy as np
import numpy.typing as npt

from treesynth.gate import SampleGate
from treesynth.metrics.embedders import Embedder, HashedTfidfEmbedder, make_embedder
from treesynth.metrics.embedding import normalize_rows, vendi_score
from treesynth.models import normalize
from treesynth.tree.checks import VAGUE_VALUES, repeats_ancestor

Matrix = npt.NDArray[np.floating[Any]]
NEAR_DUPLICATE = 0.9
"""Cosine similarity at or above which two texts count as near-duplicates."""
OVERLAP = 0.3
"""Cosine similarity at or above which two values are reported as overlapping."""
RECALLED = 0.8
"""Cosine similarity at or above which an added value recalls a held-out one."""
_WORDS = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset({"a", "an", "the", "of", "and", "or", "to", "in", "on", "for", "with", "by", "at", "is"})


@dataclass(frozen=True)
class Judgement:
    """A score in [0, 1], the feedback that explains it, and the factors it is the product of."""

    score: float
    feedback: str
    parts: Mapping[str, float] = field(default_factory=dict)


class TextEmbedding:
    """Texts to unit vectors, safe to call from the optimizers' worker threads.

    ``"lexical"`` (the default; numpy only) fits a fresh hashed TF-IDF embedder on each call's texts, so
    word weights reflect the set being judged. Any other :func:`~treesynth.metrics.make_embedder` spec
    (``minilm``, ``st:...``, ``litellm:...``) is built once, lazily, and called under a lock.
    """

    def __init__(self, spec: str = "lexical", *, dim: int = 2048) -> None:
        """Create an embedding; nothing is loaded until the first call."""
        self.spec = spec
        self.dim = dim
        self._shared: Embedder | None = None
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> Matrix:
        """An ``len(texts) × d`` matrix of unit rows (``0 × 0`` for no texts)."""
        if not texts:
            return np.zeros((0, 0))
        if self.spec == "lexical":
            embedder = HashedTfidfEmbedder(dim=self.dim)
            embedder.prepare(texts)
            return normalize_rows(embedder.embed(texts))
        with self._lock:
            if self._shared is None:
                self._shared = make_embedder(self.spec)
            return normalize_rows(self._shared.embed(texts))


def sample_text(item: Any) -> str:
    """A sample's text: the string itself, or a record's fields joined as ``name: value | ...``."""
    if isinstance(item, Mapping):
        return " | ".join(f"{k}: {v}" for k, v in item.items())
    return str(item)


def clip(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def vendi(vectors: npt.ArrayLike) -> float:
    """Vendi score of unit rows; the eigenvalues come from the smaller of the ``n × n`` and ``d × d`` kernels.

    Same value as :func:`treesynth.metrics.embedding.vendi_score`, which always uses ``d × d`` (right for
    large ``n``); small sets of high-dimensional vectors are far cheaper through the ``n × n`` Gram matrix.
    """
    x = normalize_rows(np.asarray(vectors, dtype=np.float64))
    n, d = x.shape
    if n == 0 or n > d:
        return vendi_score(x)
    eig = np.linalg.eigvalsh((x @ x.T) / n)
    eig = eig[eig > 1e-12]
    return float(np.exp(-np.sum(eig * np.log(eig))))


def _max_offdiagonal(vectors: Matrix) -> tuple[float, tuple[int, int]]:
    """The largest cosine similarity between two different rows, and that pair."""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    flat = int(np.argmax(sim))
    i, j = divmod(flat, sim.shape[0])
    return float(sim[i, j]), (i, j)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORDS.findall(text.casefold()) if w not in _STOPWORDS}


def _singular_words(text: str) -> set[str]:
    """Content words with a plain plural ``-s`` folded (``deposits`` ~ ``deposit``)."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in _content_words(text)}


def _same_value(a: str, b: str) -> bool:
    """Equal after normalization, or the content words of one contain the other's ("credit cards" ~ "card")."""
    if normalize(a) == normalize(b):
        return True
    words_a, words_b = _singular_words(a), _singular_words(b)
    return bool(words_a and words_b) and (words_a <= words_b or words_b <= words_a)


class NodeObjective(abc.ABC):
    """One module's per-node objective. Call it as a GEPA feedback metric; use :meth:`scalar` elsewhere."""

    name: str = "node"
    output: str = ""
    """The prediction field holding the set being judged."""

    def __init__(self, embedding: TextEmbedding | None = None) -> None:
        """Create an objective; ``embedding`` defaults to the lexical (numpy-only) one."""
        self.embedding = embedding or TextEmbedding()

    @abc.abstractmethod
    def judge(self, example: dspy.Example, prediction: Any) -> Judgement:
        """Score ``prediction`` (the module's answer) for the node described by ``example``."""

    def safe_judge(self, example: dspy.Example, prediction: Any) -> Judgement:
        """:meth:`judge`, scoring a missing or failed answer 0 with feedback saying so."""
        if prediction is None or getattr(prediction, self.output, None) is None:
            return Judgement(0.0, "The module gave no parseable answer; the output must follow the JSON schema.")
        return self.judge(example, prediction)

    def __call__(self, gold: dspy.Example, pred: Any, trace: Any = None, pred_name: str | None = None,
                 pred_trace: Any = None) -> dspy.Prediction:
        """GEPA's feedback metric: ``Prediction(score=..., feedback=...)``."""
        verdict = self.safe_judge(gold, pred)
        return dspy.Prediction(score=verdict.score, feedback=verdict.feedback)

    def scalar(self, gold: dspy.Example, pred: Any, trace: Any = None) -> float:
        """The score alone (the metric signature of MIPROv2, BootstrapFewShot and ``dspy.Evaluate``)."""
        return self.safe_judge(gold, pred).score


class CriterionObjective(NodeObjective):
    """Criterion determination: exclusivity of the values × share of pivots assigned exactly once, gated.

    The gate is 0 when the split is structurally unusable (empty or vague values, duplicate values after
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
        gate_problems = self._gate_problems(split.criterion, values, list(example.excluded_criteria),
                                            [n for g in split.groups for n in g.samples], pivots)
        counts = {n: 0 for n in range(1, pivots + 1)}
        for n in (n for g in split.groups for n in g.samples):
            if n in counts:
                counts[n] += 1
        once = sum(1 for c in counts.values() if c == 1) / max(pivots, 1)
        twice = sorted(n for n, c in counts.items() if c > 1)
        missing = sorted(n for n, c in counts.items() if c == 0)
        exclusivity, pair = self._exclusivity(values)
        gate = 0.0 if gate_problems else 1.0
        score = gate * exclusivity * once
        notes = list(gate_problems)
        if twice:
            notes.append(f"pivots {twice} are assigned to more than one value (values must be mutually exclusive)")
        if missing:
            notes.append(f"pivots {missing} are not assigned to any value (the values must cover every pivot)")
        if pair is not None and 1 - exclusivity >= OVERLAP:
            notes.append(f"values {values[pair[0]]!r} and {values[pair[1]]!r} overlap "
                         f"(similarity {1 - exclusivity:.2f}); choose values that cannot both hold")
        head = (f"Score {score:.2f} = valid {gate:.0f} × exclusivity {exclusivity:.2f} × pivots assigned exactly "
                f"once {once:.2f}. Criterion {split.criterion!r} with values {values}.")
        tail = " ".join(f"Problem: {n}." for n in notes) or "The split is valid, exclusive and covers every pivot."
        return Judgement(score, f"{head} {tail}", {"valid": gate, "exclusivity": exclusivity, "assigned_once": once})

    @staticmethod
    def _gate_problems(criterion: str, values: list[str], ancestors: list[str], numbers: list[int],
                       pivots: int) -> list[str]:
        problems: list[str] = []
        if not normalize(criterion):
            problems.append("the criterion is empty")
        elif (ancestor := repeats_ancestor(criterion, ancestors)) is not None:
            problems.append(f"criterion {criterion!r} repeats the ancestor criterion {ancestor!r}")
        keys = [normalize(v) for v in values]
        if any(not k for k in keys):
            problems.append("a value is empty")
        if vague := sorted({v for v, k in zip(values, keys, strict=True) if k in VAGUE_VALUES}):
            problems.append(f"vague values {vague}")
        if dupes := sorted({k for k in keys if k and keys.count(k) > 1}):
            problems.append(f"duplicate values {dupes}")
        if len({k for k in keys if k}) < 2:
            problems.append("fewer than two distinct values")
        if unknown := sorted({n for n in numbers if not 1 <= n <= pivots}):
            problems.append(f"unknown pivot numbers {unknown}")
        return problems

    def _exclusivity(self, values: list[str]) -> tuple[float, tuple[int, int] | None]:
        if len(values) < 2:
            return 0.0, None
        top, pair = _max_offdiagonal(self.embedding(values))
        return float(np.clip(1.0 - top, 0.0, 1.0)), pair


class CoverageObjective(NodeObjective):
    """Subspace coverage: validity × novelty of the added values × how far they extend the known list.

    * validity: share of added values that are non-empty, not vague and not a normalized duplicate of a
      known or an earlier added value;
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
        valid, invalid = self._valid(known, added)
        validity = len(valid) / len(added) if added else 1.0
        novelty, overlaps = self._novelty(known, valid)
        held_out = [str(v) for v in example.get("held_out", [])]
        expected = min(len(held_out), int(example.max_new))
        recalled = self._recalled(held_out, valid)
        recall = len(recalled) / len(held_out) if held_out else 1.0
        extent = min(1.0, len(valid) / expected) * (0.25 + 0.75 * recall) if expected else 1.0
        score = validity * novelty * extent
        notes = [f"{v!r} is {why}" for v, why in invalid]
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
                if any(_same_value(value, other) or sim[i, j] >= RECALLED for j, other in enumerate(added))]

    @staticmethod
    def _valid(known: list[str], added: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        seen = {normalize(v) for v in known}
        valid: list[str] = []
        invalid: list[tuple[str, str]] = []
        for value in added:
            key = normalize(value)
            if not key:
                invalid.append((value, "empty"))
            elif key in VAGUE_VALUES:
                invalid.append((value, "vague"))
            elif key in seen:
                invalid.append((value, "a duplicate of a value already listed"))
            else:
                seen.add(key)
                valid.append(value)
        return valid, invalid

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
        own = _content_words(str(example.get("own_value", "")))
        siblings = [(str(v), _content_words(str(v)) - own) for v in example.get("sibling_values", [])]
        valid: list[str] = []
        invalid: list[tuple[int, str]] = []
        for i, (sample, text) in enumerate(zip(samples, texts, strict=True)):
            words = _content_words(text)
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
        within = min(1.0, vendi(vectors) / len(valid))
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


OBJECTIVES: dict[str, type[NodeObjective]] = {
    "criterion": CriterionObjective,
    "coverage": CoverageObjective,
    "leaf": LeafObjective,
}
"""The objective class of each compilable module (pivot generation has none)."""


def make_objective(module: str, embedding: TextEmbedding | None = None) -> NodeObjective:
    """The objective for ``module`` (``criterion``, ``coverage`` or ``leaf``)."""
    return OBJECTIVES[module](embedding)
