"""Diversity metrics, embedders and evaluation reports (issue #4).

Import from here or from the defining modules:

* :mod:`treesynth.metrics.embedding` -- pairwise cosine similarity/distance, Vendi, remote-clique,
  nearest-neighbour distance, near-duplicate rate;
* :mod:`treesynth.metrics.lexical` -- distinct-n, n-gram entropy, self-BLEU (exact, linear);
* :mod:`treesynth.metrics.structure` -- leaf and branch distribution of a tree-synthesised dataset;
* :mod:`treesynth.metrics.embedders` -- MiniLM / sentence-transformers / LiteLLM / lexical embedders + cache;
* :mod:`treesynth.metrics.data` -- JSONL and run-directory loading with line-numbered errors;
* :mod:`treesynth.metrics.report` and :mod:`treesynth.metrics.plots` -- ``metrics.json``, ``report.md``, PNGs.

Heavy optional libraries (torch, sentence-transformers, scikit-learn, matplotlib, litellm) are imported only
when used.
"""

from __future__ import annotations

from treesynth.metrics.data import LoadedDataset, Record, TextSelector, iter_records, load_dataset
from treesynth.metrics.embedders import (
    Embedder,
    EmbeddingCache,
    HashedTfidfEmbedder,
    LiteLLMEmbedder,
    SentenceTransformerEmbedder,
    default_embedder_spec,
    embed_texts,
    make_embedder,
    minilm_embedder,
)
from treesynth.metrics.embedding import (
    NeighbourStats,
    embedding_summary,
    mean_nn_distance,
    mean_pairwise_cosine_distance,
    mean_pairwise_cosine_similarity,
    near_duplicate_rate,
    neighbour_stats,
    remote_clique,
    vendi_score,
)
from treesynth.metrics.lexical import (
    distinct_n,
    exact_duplicate_rate,
    lexical_summary,
    ngram_entropy,
    self_bleu,
    tokenize,
)
from treesynth.metrics.report import EvalOptions, EvalResult, evaluate, render_markdown, write_outputs
from treesynth.metrics.structure import (
    branch_of_path,
    coverage_at_quota,
    gini,
    normalized_entropy,
    size_histogram,
    structure_summary,
    tree_leaves,
)

__all__ = [
    "Embedder",
    "EmbeddingCache",
    "EvalOptions",
    "EvalResult",
    "HashedTfidfEmbedder",
    "LiteLLMEmbedder",
    "LoadedDataset",
    "NeighbourStats",
    "Record",
    "SentenceTransformerEmbedder",
    "TextSelector",
    "branch_of_path",
    "coverage_at_quota",
    "default_embedder_spec",
    "distinct_n",
    "embed_texts",
    "embedding_summary",
    "evaluate",
    "exact_duplicate_rate",
    "gini",
    "iter_records",
    "lexical_summary",
    "load_dataset",
    "make_embedder",
    "mean_nn_distance",
    "mean_pairwise_cosine_distance",
    "mean_pairwise_cosine_similarity",
    "minilm_embedder",
    "near_duplicate_rate",
    "neighbour_stats",
    "ngram_entropy",
    "normalized_entropy",
    "remote_clique",
    "render_markdown",
    "self_bleu",
    "size_histogram",
    "structure_summary",
    "tokenize",
    "tree_leaves",
    "vendi_score",
    "write_outputs",
]
