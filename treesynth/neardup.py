"""Near-duplicate detection: MinHash LSH over shingles, one rule for the run's accept path and for ``eval``.

**Shingles** (:func:`shingles`). A text is normalized as for exact dedup (:func:`treesynth.models.normalize`:
lower case, punctuation stripped, whitespace collapsed) and cut into overlapping word 2-grams
(:data:`SHINGLE_WORDS`). Why 2: one changed word removes ``k`` of the ``k``-word shingles, so at Jaccard 0.8 a
one-word edit is caught in texts from about 19 words with 2-grams, but only from about 29 words with 3-grams;
on the benchmark's 26-word problems (``benchmarks/bench_neardup.py``), 3-grams found 8 of 382 planted one-word
edits at 0.8 and 2-grams 362, with no other text flagged. A short text, with fewer than
:data:`SHORT_TEXT_WORDS` words, is cut into character 5-grams (:data:`SHINGLE_CHARS`) of its normalized form
instead: a handful of word 2-grams makes Jaccard too coarse. Each shingle is hashed to 32 bits (CRC-32), so a
text is a set of integers.

**The rule.** Two texts are near-duplicates when the Jaccard similarity of their shingle sets is at least the
threshold (:data:`DEFAULT_THRESHOLD`, 0.8). ``datasketch``'s :class:`~datasketch.MinHashLSH` (:data:`NUM_PERM`
permutations, fixed seed) proposes candidates, and every candidate is verified with the *exact* Jaccard of the
two hashed shingle sets, so LSH's false positives never reject anything and the verdict is deterministic. LSH
may miss a pair (a false negative); its bands are chosen for recall (:data:`LSH_WEIGHTS`). For scale: "If you
have 5 apples, how many more do you need to have 10 apples?" and "... to get 10?" share 11 of 16 word 2-grams
(Jaccard 0.69), a near-duplicate at ``--near-dup 0.6`` but not at 0.8; the embedding check catches such
paraphrases.

**Embedding check** (optional). With an ``embed`` function (e.g. MiniLM) and a cosine threshold, a text whose
embedding has cosine similarity at or above that threshold with an accepted one is a near-duplicate too.

:class:`NearDupIndex` is incremental (the run adds each accepted sample; a resumed run rebuilds it from the
store); :func:`near_duplicate_pairs` and :func:`near_duplicate_rate` apply the same rule to a list of texts
in order (``eval``, the benchmark). Pure: no I/O; ``datasketch`` is imported on first use.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from treesynth.models import normalize

DEFAULT_THRESHOLD = 0.8
"""Jaccard similarity (of shingle sets) at or above which two samples are near-duplicates."""
SHINGLE_WORDS = 2
"""Words per shingle (see the module docstring for why 2)."""
SHORT_TEXT_WORDS = 8
"""Texts with fewer words are shingled by characters (:data:`SHINGLE_CHARS`) instead."""
SHINGLE_CHARS = 5
"""Characters per shingle of a short text."""
NUM_PERM = 128
"""MinHash permutations (signature length)."""
MINHASH_SEED = 1
"""Seed of the MinHash permutations (fixed: the same texts always give the same candidates)."""
LSH_WEIGHTS = (0.05, 0.95)
"""Weights of false positives and false negatives when ``datasketch`` picks the LSH bands: favour recall, since
every candidate is verified anyway (at 0.8: 16 bands of 8 rows; a pair at the threshold is found with
probability 0.95, at 0.85 with 0.99; datasketch's even weights find one at the threshold with 0.4)."""

Hashes = npt.NDArray[np.uint32]
Backend = Literal["datasketch", "rensa"]
"""The MinHash LSH implementation of a :class:`NearDupIndex`."""
Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]
"""Texts -> one L2-normalized row per text."""


def shingles(text: str) -> set[str]:
    """The shingles of ``text``: word 2-grams of its normalized words, or character 5-grams when it is short."""
    words = normalize(text).split()
    if len(words) >= SHORT_TEXT_WORDS:
        return {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}
    joined = " ".join(words)
    if len(joined) <= SHINGLE_CHARS:
        return {f"\x00{joined}"} if joined else set()
    return {f"\x00{joined[i:i + SHINGLE_CHARS]}" for i in range(len(joined) - SHINGLE_CHARS + 1)}


def shingle_hashes(text: str) -> Hashes:
    """The sorted, distinct 32-bit hashes of :func:`shingles` of ``text``."""
    return _hashed(shingles(text))


def _hashed(found: set[str]) -> Hashes:
    return np.unique(np.fromiter((zlib.crc32(s.encode()) for s in found), dtype=np.uint32, count=len(found)))


def jaccard(a: Hashes, b: Hashes) -> float:
    """Exact Jaccard similarity of two hashed shingle sets (0 when both are empty)."""
    union = a.size + b.size
    if not union:
        return 0.0
    common = np.intersect1d(a, b, assume_unique=True).size
    return float(common / (union - common))


def sample_text(sample: Mapping[str, Any]) -> str:
    """The content of a stored sample: its ``text``, or its field values joined by spaces."""
    if "text" in sample:
        return str(sample["text"])
    return " ".join(str(value) for value in (sample.get("fields") or {}).values())


@dataclass(frozen=True)
class Match:
    """An accepted sample a candidate collides with."""

    key: str
    """The accepted sample's id (or index, for :func:`near_duplicate_pairs`)."""
    similarity: float
    """Jaccard similarity of the shingle sets, or cosine similarity for an embedding match."""
    measure: str
    """``jaccard`` or ``cosine``."""

    def ledger(self) -> dict[str, Any]:
        """The fields a rejected candidate records: ``duplicate_of``, ``similarity``, ``measure``."""
        return {"duplicate_of": self.key, "similarity": round(self.similarity, 4), "measure": self.measure}


class NearDupIndex:
    """Incremental near-duplicate index: :meth:`match` a text against the texts :meth:`add`-ed so far.

    Args:
        threshold: Jaccard threshold (in (0, 1]); ``None`` leaves only the embedding check.
        embed: Optional embedding function for the cosine check.
        embedding_threshold: Cosine threshold of that check (``None``: no embedding check).
        backend: ``datasketch`` (the default; a core dependency) or ``rensa`` (``pip install rensa``; faster,
            see ``benchmarks/RESULTS.md``): whose MinHash and LSH propose candidates. Both use the same bands
            and the same exact check, so they differ only in which rare pairs LSH misses.
    """

    def __init__(self, threshold: float | None = DEFAULT_THRESHOLD, *, embed: Embed | None = None,
                 embedding_threshold: float | None = None, backend: Backend = "datasketch") -> None:
        """Create an empty index; see the class docstring."""
        from datasketch import MinHash, MinHashLSH

        for name, value in (("near-duplicate", threshold), ("embedding", embedding_threshold)):
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} threshold must be in (0, 1], got {value}")
        self.threshold = threshold
        self.backend = backend
        self._lsh = MinHashLSH(threshold=threshold or DEFAULT_THRESHOLD, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
        if backend == "rensa":
            from rensa import RMinHashLSH

            bands = max(b for b in range(1, self._lsh.b + 1) if NUM_PERM % b == 0)  # rensa splits evenly
            self._lsh = RMinHashLSH(threshold=threshold or DEFAULT_THRESHOLD, num_perm=NUM_PERM, num_bands=bands)
        self._work = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, hashfunc=int)
        self._keys: list[str] = []
        self._hashes: list[Hashes] = []
        self._embed = embed if embedding_threshold is not None else None
        self.embedding_threshold = embedding_threshold
        self._vectors: list[npt.NDArray[np.float32]] = []
        self._matrix: npt.NDArray[np.float32] | None = None
        self._last: tuple[str, tuple[Hashes, Any]] | None = None
        self._last_vector: tuple[str, npt.NDArray[np.float32]] | None = None

    def __len__(self) -> int:
        """Texts added so far."""
        return len(self._keys)

    def match(self, text: str) -> Match | None:
        """The added text that ``text`` collides with (highest similarity, then earliest added), or ``None``."""
        found = None
        if self.threshold is not None:
            found = self._match_hashes(*self._sketch(text))
        if found is None and self._embed is not None and self._vectors:
            found = self._match_vector(self._vector(text))
        return found

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (an accepted sample's id)."""
        ordinal = len(self._keys)
        self._keys.append(key)
        if self.threshold is not None:
            hashes, sketch = self._sketch(text)
            self._hashes.append(hashes)
            if sketch is not None and self.backend == "rensa":
                self._lsh.insert(ordinal, sketch)
            elif sketch is not None:
                self._lsh.insert(ordinal, sketch, check_duplication=False)
        if self._embed is not None:
            self._vectors.append(self._vector(text))
            self._matrix = None

    def _vector(self, text: str) -> npt.NDArray[np.float32]:
        """The embedding of ``text`` (the last one is reused, as a candidate is matched, then added)."""
        if self._last_vector is None or self._last_vector[0] != text:
            assert self._embed is not None
            self._last_vector = (text, self._embed([text])[0])
        return self._last_vector[1]

    def _sketch(self, text: str) -> tuple[Hashes, Any]:
        """The hashed shingles and MinHash of ``text`` (``None`` without shingles); the last one is reused."""
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        from datasketch import LeanMinHash

        found = shingles(text)
        hashes, sketch = _hashed(found), None
        if hashes.size and self.backend == "rensa":
            from rensa import RMinHash

            sketch = RMinHash(num_perm=NUM_PERM, seed=MINHASH_SEED)
            sketch.update(list(found))  # R-MinHash ignores token order
        elif hashes.size:  # one working MinHash (its permutations are made once); the index keeps lean copies
            self._work.clear()
            self._work.update_batch(hashes.tolist())
            sketch = LeanMinHash(self._work)
        self._last = (text, (hashes, sketch))
        return hashes, sketch

    def _match_hashes(self, hashes: Hashes, sketch: Any) -> Match | None:
        if sketch is None or not self._keys or self.threshold is None:
            return None
        best: tuple[float, int] | None = None
        for ordinal in sorted(self._lsh.query(sketch)):
            similarity = jaccard(hashes, self._hashes[ordinal])
            if similarity >= self.threshold and (best is None or similarity > best[0]):
                best = (similarity, ordinal)
        return None if best is None else Match(self._keys[best[1]], best[0], "jaccard")

    def _match_vector(self, vector: npt.NDArray[np.float32]) -> Match | None:
        if self._matrix is None:
            self._matrix = np.vstack(self._vectors)
        cosines = self._matrix @ vector
        ordinal = int(np.argmax(cosines))
        threshold = self.embedding_threshold
        if threshold is None or cosines[ordinal] < threshold:
            return None
        return Match(self._keys[ordinal], float(cosines[ordinal]), "cosine")


def near_duplicate_pairs(texts: Iterable[str], threshold: float = DEFAULT_THRESHOLD, *,
                         backend: Backend = "datasketch") -> list[tuple[int, Match]]:
    """``(i, match)`` for every text that near-duplicates an earlier one (``match.key`` is that one's index).

    The texts are taken in order, each matched against all earlier ones (not only the kept ones), so a
    chain of near-duplicates counts every link.
    """
    index = NearDupIndex(threshold, backend=backend)
    pairs: list[tuple[int, Match]] = []
    for i, text in enumerate(texts):
        found = index.match(text)
        if found is not None:
            pairs.append((i, found))
        index.add(str(i), text)
    return pairs


def near_duplicate_rate(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share of ``texts`` that near-duplicate an earlier text (exact duplicates included); 0 for no texts."""
    if not texts:
        return 0.0
    return len(near_duplicate_pairs(texts, threshold)) / len(texts)


NEAR_DUPLICATE = "near-duplicate"
"""The reason a near-duplicate candidate is rejected with (``rejected.jsonl``, ``counts.rejected_by_reason``)."""
NEAR_FIELDS = ("duplicate_of", "similarity", "measure")
"""The fields a near-duplicate's line of ``rejected.jsonl`` adds (see :meth:`Match.ledger`)."""


@dataclass(frozen=True)
class NearDupScreen:
    """The accept path's view of a :class:`NearDupIndex`: stored sample payloads in, ledger fields out."""

    index: NearDupIndex
    stage: str = "leaf"
    """The stage that made the candidates (recorded with a rejected one, as the sample gate does)."""

    def check(self, sample: Mapping[str, Any]) -> dict[str, Any] | None:
        """``None`` when ``sample`` is no near-duplicate, else the fields its rejection records."""
        found = self.index.match(sample_text(sample))
        return None if found is None else {**found.ledger(), "stage": self.stage}

    def admit(self, sample: Mapping[str, Any]) -> None:
        """Index an accepted ``sample`` (so later candidates are checked against it)."""
        self.index.add(str(sample["id"]), sample_text(sample))

    def admit_all(self, samples: Iterable[Mapping[str, Any]]) -> NearDupScreen:
        """Index ``samples`` (a resumed run's accepted samples, in acceptance order); returns ``self``."""
        for sample in samples:
            self.admit(sample)
        return self
