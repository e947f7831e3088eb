"""Lexical metrics: self-BLEU against NLTK, distinct-n and entropy against direct counts."""

from __future__ import annotations

import math
import random
import warnings
from collections import Counter

import pytest
from nltk.translate import bleu_score

from treesynth.metrics.lexical import (
    closest_other_lengths,
    distinct_n,
    exact_duplicate_rate,
    lexical_summary,
    ngram_entropy,
    self_bleu,
    self_bleu_naive,
    tokenize,
)


def random_docs(n: int, seed: int, vocab: int = 30, max_len: int = 14, min_len: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    return [[rng.choice(words) for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]


def nltk_self_bleu(docs: list[list[str]], max_n: int) -> float:
    weights = tuple([1.0 / max_n] * max_n)
    refs = [[d for j, d in enumerate(docs) if j != i] for i in range(len(docs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bleu_score.corpus_bleu(refs, docs, weights=weights))


def nltk_sentence_self_bleu(docs: list[list[str]], max_n: int) -> float:
    weights = tuple([1.0 / max_n] * max_n)
    smooth = bleu_score.SmoothingFunction().method1
    scores = []
    for i, hyp in enumerate(docs):
        refs = [d for j, d in enumerate(docs) if j != i]
        scores.append(bleu_score.sentence_bleu(refs, hyp, weights=weights, smoothing_function=smooth))
    return sum(scores) / len(scores)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_n", [1, 2, 3, 4])
def test_self_bleu_equals_nltk_corpus_bleu(seed: int, max_n: int) -> None:
    docs = random_docs(25 + seed * 7, seed, vocab=8 + seed * 3, min_len=seed % 2)
    assert self_bleu(docs, max_n) == pytest.approx(nltk_self_bleu(docs, max_n), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("seed", range(4))
def test_self_bleu_equals_nltk_on_real_text(seed: int) -> None:
    rng = random.Random(seed)
    base = tokenize("the quick brown fox jumps over the lazy dog while a cat sleeps on the warm mat")
    docs = []
    for _ in range(40):
        start = rng.randint(0, 6)
        docs.append([*base[start : start + rng.randint(3, 12)], rng.choice(["today", "again", "."])])
    assert self_bleu(docs) == pytest.approx(nltk_self_bleu(docs, 4), rel=1e-12)
    assert self_bleu_naive(docs) == pytest.approx(nltk_self_bleu(docs, 4), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_sentence_self_bleu_equals_nltk_method1(seed: int) -> None:
    docs = random_docs(30, seed, vocab=12, min_len=0)
    expected = nltk_sentence_self_bleu(docs, 4)
    assert self_bleu(docs, 4, mode="sentence") == pytest.approx(expected, rel=1e-12)


def test_self_bleu_known_cases() -> None:
    same = [["a", "b", "c", "d", "e"]] * 5
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(same, mode="sentence") == pytest.approx(1.0)
    disjoint = [[f"d{i}t{k}" for k in range(6)] for i in range(5)]
    assert self_bleu(disjoint) == 0.0
    assert self_bleu(disjoint, mode="sentence") == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        self_bleu([["a"]])
    with pytest.raises(ValueError, match="mode"):
        self_bleu(same, mode="bogus")  # type: ignore[arg-type]


def test_closest_other_lengths_matches_brute_force() -> None:
    rng = random.Random(1)
    for _ in range(50):
        lengths = [rng.randint(0, 9) for _ in range(rng.randint(2, 12))]
        expected = [
            min((lj for j, lj in enumerate(lengths) if j != i), key=lambda r, li=li: (abs(r - li), r))
            for i, li in enumerate(lengths)
        ]
        assert closest_other_lengths(lengths).tolist() == expected


def test_distinct_n_counts() -> None:
    docs = [["a", "b", "a"], ["a", "b"]]
    assert distinct_n(docs, 1) == pytest.approx(2 / 5)
    assert distinct_n(docs, 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n(docs, 3) == pytest.approx(1.0)
    assert distinct_n(docs, 4) == 0.0
    assert distinct_n([["x", "y"]] * 4, 1) == pytest.approx(2 / 8)


def test_ngram_entropy_in_bits() -> None:
    assert ngram_entropy([["a", "b", "c", "d"]], 1) == pytest.approx(2.0)
    assert ngram_entropy([["a", "a", "a"]], 1) == 0.0
    assert ngram_entropy([], 1) == 0.0
    docs = random_docs(20, 3)
    counts = Counter(t for d in docs for t in d)
    total = sum(counts.values())
    expected = -sum(c / total * math.log2(c / total) for c in counts.values())
    assert ngram_entropy(docs, 1) == pytest.approx(expected)


def test_lexical_summary_agrees_with_single_metrics() -> None:
    docs = random_docs(15, 2)
    summary = lexical_summary(docs, 3)
    for n in (1, 2, 3):
        assert summary[f"distinct_{n}"] == pytest.approx(distinct_n(docs, n))
        assert summary[f"entropy_{n}"] == pytest.approx(ngram_entropy(docs, n))


def test_tokenize_and_exact_duplicates() -> None:
    assert tokenize("Hello, World! It's 3.5") == ["hello", ",", "world", "!", "it", "'", "s", "3", ".", "5"]
    assert exact_duplicate_rate(["a", "b", " a ", "a"]) == pytest.approx(0.5)
    assert exact_duplicate_rate([]) == 0.0
