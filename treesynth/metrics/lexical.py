"""Lexical diversity metrics over tokenised documents.

Documents are sequences of tokens (see :func:`tokenize`); an n-gram is a tuple of ``n`` consecutive tokens
inside one document. All metrics here run in time linear in the number of n-grams.

* distinct-n: ``|unique n-grams| / |n-gram occurrences|`` over the corpus.
* n-gram entropy: Shannon entropy (bits) of the corpus n-gram frequency distribution.
* self-BLEU-n: BLEU of every document against all the *other* documents as references, with NLTK's
  ``corpus_bleu`` semantics (or the sentence-level average). The naive algorithm compares each document
  with ``n − 1`` references -- ``O(n²·L)``; :func:`self_bleu` computes the same number exactly in
  ``O(total n-grams)`` (see its docstring).
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Tokens = Sequence[str]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)

#: NLTK ``SmoothingFunction().method1`` epsilon, used by the sentence-level self-BLEU.
SMOOTHING_EPSILON = 0.1


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into word tokens (``\\w+``) and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


def ngrams(tokens: Tokens, n: int) -> Iterable[tuple[str, ...]]:
    """The n-grams of one document, in order (none when ``len(tokens) < n``)."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    return zip(*(tokens[k:] for k in range(n)), strict=False)


def ngram_counts(docs: Iterable[Tokens], n: int) -> Counter[tuple[str, ...]]:
    """Corpus-level counts of every n-gram over all documents."""
    counts: Counter[tuple[str, ...]] = Counter()
    for doc in docs:
        counts.update(ngrams(doc, n))
    return counts


def distinct_n(docs: Iterable[Tokens], n: int) -> float:
    """distinct-n = ``|unique n-grams| / |n-gram occurrences|`` over the corpus (0 when there are none).

    1.0 means no n-gram repeats anywhere; identical documents give ``1 / copies`` at most.
    """
    counts = ngram_counts(docs, n)
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def ngram_entropy(docs: Iterable[Tokens], n: int) -> float:
    """Shannon entropy in bits of the corpus n-gram distribution, ``H = −Σ_g p(g) log₂ p(g)``.

    ``p(g) = count(g) / total``. 0 for an empty corpus or a single repeated n-gram.
    """
    return _entropy_bits(ngram_counts(docs, n))


def _entropy_bits(counts: Counter[tuple[str, ...]]) -> float:
    total = sum(counts.values())
    if not total:
        return 0.0
    p = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) / total
    return float(-(p * np.log2(p)).sum()) + 0.0


def lexical_summary(docs: Sequence[Tokens], max_n: int = 3) -> dict[str, float]:
    """``distinct_k`` and ``entropy_k`` for ``k = 1..max_n`` from one counting pass per order.

    Keys look like ``distinct_1`` and ``entropy_2``.
    """
    out: dict[str, float] = {}
    for n in range(1, max_n + 1):
        counts = ngram_counts(docs, n)
        total = sum(counts.values())
        out[f"distinct_{n}"] = len(counts) / total if total else 0.0
        out[f"entropy_{n}"] = _entropy_bits(counts)
    return out


def exact_duplicate_rate(texts: Sequence[str]) -> float:
    """Fraction of texts equal to an earlier text (after stripping whitespace at both ends)."""
    if not texts:
        return 0.0
    unique = len({t.strip() for t in texts})
    return (len(texts) - unique) / len(texts)


# --------------------------------------------------------------------------------------------- self-BLEU


@dataclass(frozen=True)
class _OrderCounts:
    """Per-document clipped matches and n-gram totals for one n-gram order."""

    numerators: npt.NDArray[np.float64]
    denominators: npt.NDArray[np.float64]


def _order_counts(docs: Sequence[Tokens], n: int) -> _OrderCounts:
    """Clipped n-gram matches of every document against all other documents, in ``O(total n-grams)``.

    For each distinct n-gram ``g`` keep its top count over documents, how many documents reach it and the
    best count among the others. The reference maximum for document ``i`` is the top count unless ``i`` is
    the only document reaching it, in which case it is the second count. The clipped match count is
    ``min(cᵢ(g), ref_max)``, exactly as NLTK's ``modified_precision`` against references ``docs \\ {i}``.
    """
    intern: dict[tuple[str, ...], int] = {}
    gram_ids: list[int] = []
    gram_counts: list[int] = []
    per_doc: list[int] = []
    for doc in docs:
        counter = Counter(ngrams(doc, n))
        gram_ids.extend([intern.setdefault(g, len(intern)) for g in counter])
        gram_counts.extend(counter.values())
        per_doc.append(len(counter))
    gid = np.asarray(gram_ids, dtype=np.int64)
    cnt = np.asarray(gram_counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(docs), dtype=np.int64), per_doc)
    top = np.zeros(len(intern), dtype=np.int64)
    np.maximum.at(top, gid, cnt)
    is_top = cnt == top[gid]
    n_top = np.bincount(gid[is_top], minlength=len(intern))
    second = np.zeros(len(intern), dtype=np.int64)
    np.maximum.at(second, gid[~is_top], cnt[~is_top])
    sole_top = is_top & (n_top[gid] == 1)
    ref_max = np.where(sole_top, second[gid], top[gid])
    clipped = np.minimum(cnt, ref_max)
    numerators = np.bincount(owner, weights=clipped.astype(np.float64), minlength=len(docs)).astype(np.float64)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.float64, count=len(docs))
    denominators = np.maximum(1.0, lengths - n + 1)
    return _OrderCounts(numerators=numerators, denominators=denominators)


def closest_other_lengths(lengths: Sequence[int]) -> npt.NDArray[np.int64]:
    """For each document, the length of the closest *other* document (ties go to the shorter one).

    This is NLTK's ``closest_ref_length`` against references ``docs \\ {i}``, computed from the sorted
    distinct lengths in ``O(n log n)``.
    """
    arr = np.asarray(lengths, dtype=np.int64)
    values, counts = np.unique(arr, return_counts=True)
    idx = np.searchsorted(values, arr)
    big = np.iinfo(np.int64).max // 4
    shared = counts[idx] >= 2
    below = np.where(idx > 0, values[np.maximum(idx - 1, 0)], -big)
    above = np.where(idx + 1 < len(values), values[np.minimum(idx + 1, len(values) - 1)], big)
    take_below = (arr - below) <= (above - arr)
    nearest = np.where(take_below, below, above)
    result: npt.NDArray[np.int64] = np.where(shared, arr, nearest)
    return result


def _brevity_penalty(ref_len: float, hyp_len: float) -> float:
    """BLEU brevity penalty: 1 if ``c > r``, 0 if ``c = 0``, else ``exp(1 − r / c)``."""
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1.0 - ref_len / hyp_len)


def _corpus_bleu(counts: list[_OrderCounts], hyp_len: float, ref_len: float, weights: Sequence[float]) -> float:
    nums = [float(c.numerators.sum()) for c in counts]
    dens = [float(c.denominators.sum()) for c in counts]
    if nums[0] == 0:
        return 0.0
    # NLTK's method0: a zero precision becomes the smallest positive float (BLEU ≈ 0).
    logs = [math.log(num / den) if num else math.log(sys.float_info.min) for num, den in zip(nums, dens, strict=True)]
    return _brevity_penalty(ref_len, hyp_len) * math.exp(math.fsum(w * lg for w, lg in zip(weights, logs, strict=True)))


def _sentence_bleus(
    counts: list[_OrderCounts],
    hyp_lens: npt.NDArray[np.float64],
    ref_lens: npt.NDArray[np.float64],
    weights: Sequence[float],
) -> npt.NDArray[np.float64]:
    log_p = np.zeros_like(hyp_lens)
    for w, c in zip(weights, counts, strict=True):
        num = np.where(c.numerators == 0, SMOOTHING_EPSILON, c.numerators)
        log_p += w * np.log(num / c.denominators)
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(hyp_lens > ref_lens, 1.0, np.exp(1.0 - ref_lens / np.maximum(hyp_lens, 1.0)))
    bp = np.where(hyp_lens == 0, 0.0, bp)
    scores: npt.NDArray[np.float64] = np.where(counts[0].numerators == 0, 0.0, bp * np.exp(log_p))
    return scores


def self_bleu(
    docs: Sequence[Tokens],
    max_n: int = 4,
    *,
    mode: Literal["corpus", "sentence"] = "corpus",
) -> float:
    """Self-BLEU-``max_n`` with uniform weights ``1/max_n``: BLEU of each document against all the others.

    ``mode="corpus"`` equals NLTK ``corpus_bleu([docs \\ {i} for i], docs)`` (no smoothing)::

        pₖ  = Σᵢ Σ_g min(cᵢ(g), maxⱼ≠ᵢ cⱼ(g)) / Σᵢ max(1, |docᵢ| − k + 1)
        BP  = exp(1 − r/c) if c ≤ r else 1,  c = Σᵢ |docᵢ|,  r = Σᵢ |closest other doc to docᵢ|
        BLEU = BP · exp(Σₖ log(pₖ) / max_n)

    ``mode="sentence"`` is the Texygen-style mean of per-document BLEU, equal to NLTK ``sentence_bleu``
    with ``SmoothingFunction().method1`` (zero match counts become 0.1).

    Exact algorithm, linear in the number of n-grams: for every distinct n-gram keep the top count over
    documents, its number of owners and the runner-up count; then ``maxⱼ≠ᵢ cⱼ(g)`` is the top count unless
    ``i`` is its only owner, when it is the runner-up. The closest other length comes from the sorted
    lengths. Higher self-BLEU means more overlap, i.e. *less* diversity.

    Raises:
        ValueError: fewer than 2 documents, or ``max_n < 1``.
    """
    if len(docs) < 2:
        raise ValueError(f"self-BLEU needs at least 2 documents, got {len(docs)}")
    if max_n < 1:
        raise ValueError(f"max_n must be ≥ 1, got {max_n}")
    weights = [1.0 / max_n] * max_n
    counts = [_order_counts(docs, k) for k in range(1, max_n + 1)]
    lengths = [len(d) for d in docs]
    ref_lens = closest_other_lengths(lengths).astype(np.float64)
    hyp_lens = np.asarray(lengths, dtype=np.float64)
    if mode == "corpus":
        return _corpus_bleu(counts, float(hyp_lens.sum()), float(ref_lens.sum()), weights)
    if mode == "sentence":
        return float(_sentence_bleus(counts, hyp_lens, ref_lens, weights).mean())
    raise ValueError(f"mode must be 'corpus' or 'sentence', got {mode!r}")


def self_bleu_naive(docs: Sequence[Tokens], max_n: int = 4, **kwargs: Any) -> float:
    """Reference self-BLEU through NLTK's ``corpus_bleu`` -- ``O(n²·L)``; for tests and benchmarks only.

    Needs ``nltk`` (``pip install nltk``). ``kwargs`` go to ``corpus_bleu`` (e.g. ``smoothing_function``).
    """
    try:
        from nltk.translate.bleu_score import corpus_bleu
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("self_bleu_naive needs nltk: pip install nltk") from exc
    weights = tuple([1.0 / max_n] * max_n)
    refs = [[d for j, d in enumerate(docs) if j != i] for i in range(len(docs))]
    return float(corpus_bleu(refs, list(docs), weights=weights, **kwargs))
