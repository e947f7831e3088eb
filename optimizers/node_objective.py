"""What every per-node objective shares: the :class:`Judgement`, the text embedding, the base class.

See :mod:`treesynth.optimizers.objectives` for the objectives themselves.
"""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy
import numpy as np
import numpy.typing as npt

from treesynth.metrics.embedders import Embedder, HashedTfidfEmbedder, make_embedder
from treesynth.metrics.embedding import normalize_rows
from treesynth.models import fields_text, normalize
from treesynth.tree.checks import stem

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
        return fields_text(item)
    return str(item)


def clip(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def max_offdiagonal(vectors: Matrix) -> tuple[float, tuple[int, int]]:
    """The largest cosine similarity between two different rows, and that pair."""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    flat = int(np.argmax(sim))
    i, j = divmod(flat, sim.shape[0])
    return float(sim[i, j]), (i, j)


def content_words(text: str) -> set[str]:
    """The casefolded words of ``text`` without stopwords."""
    return {w for w in _WORDS.findall(text.casefold()) if w not in _STOPWORDS}


def _singular_words(text: str) -> set[str]:
    """Content words with a plain plural ``-s`` folded (``deposits`` ~ ``deposit``)."""
    return {stem(w) for w in content_words(text)}


def same_value(a: str, b: str) -> bool:
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
