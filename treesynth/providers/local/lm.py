"""The ``dspy.LM`` factory for ``local/...`` model strings (see :mod:`.registry`) and the engine registry.

:func:`make_local_lm` builds the LM; :data:`ENGINES` shares one :class:`~.engine.LlamaCppEngine` (one
loaded model) per GGUF and :class:`EngineSettings`. Nothing here imports ``llama_cpp`` at import time.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from treesynth.errors import ConfigError
from treesynth.providers.local.assembly import resolve_gguf
from treesynth.providers.local.decoder import Decoder, default_threads
from treesynth.providers.local.engine import AsyncLlamaCppEngine, LlamaCppEngine
from treesynth.providers.local.registry import MODELS, LocalModel, local_model

__all__ = ["DEFAULT_ENGINE", "ENGINES", "EngineSettings", "make_local_lm"]


@dataclass(frozen=True)
class EngineSettings:
    """How the embedded engine runs a model.

    Attributes:
        n_ctx: Context window of the engine (default: the model's).
        n_threads: CPU threads (default: usable cores).
        decoder: ``"fast"`` or ``"llama"`` (see :class:`~.engine.LlamaCppEngine`).
    """

    n_ctx: int | None = None
    n_threads: int | None = None
    decoder: Decoder = "fast"


DEFAULT_ENGINE = EngineSettings()


class _EngineRegistry:
    """One engine (one loaded model) per process per (GGUF path, n_ctx, n_threads, decoder)."""

    def __init__(self) -> None:
        self._engines: dict[tuple[str, int, int, str], LlamaCppEngine] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, spec: LocalModel, *, n_ctx: int | None = None, n_threads: int | None = None,
            decoder: Decoder = "fast") -> LlamaCppEngine:
        """The shared engine for these settings (created, not loaded, on first request)."""
        threads = n_threads or default_threads()
        context = n_ctx or spec.n_ctx
        key = (str(path.resolve()), context, threads, decoder)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = LlamaCppEngine(path, spec, n_ctx=context, n_threads=threads, decoder=decoder)
                self._engines[key] = engine
            return engine

    def __len__(self) -> int:
        return len(self._engines)

    def clear(self) -> None:
        """Close and forget every engine (for tests and long-lived processes)."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()


ENGINES = _EngineRegistry()
"""The process-wide keyed engine registry (empty until :func:`make_local_lm` runs)."""


def make_local_lm(
    name: str,
    *,
    temperature: float,
    max_tokens: int,
    cache: bool = True,
    cache_dir: Path | None = None,
    engine: EngineSettings = DEFAULT_ENGINE,
    **kwargs: Any,
) -> dspy.LM:
    """Build a ``dspy.LM`` for an embedded ``local/...`` model (see :data:`~.registry.MODELS`).

    The DSPy model string names the exact weights (``local/<name>@<sha256[:12]>``) so DSPy's cache never
    mixes results of different weights. The GGUF is assembled on first use, the model loaded lazily on
    the first call and shared by every LM built for the same GGUF and ``engine`` settings.

    Args:
        name: A registered model string, e.g. ``local/qwen2.5-coder-1.5b-instruct``.
        temperature: Default sampling temperature (overridable per call via ``config=``).
        max_tokens: Default completion budget (capped by ``n_ctx`` minus the prompt).
        cache: Use DSPy's request cache.
        cache_dir: Where the GGUF is assembled (see :func:`~.assembly.resolve_gguf`).
        engine: Context window, threads and decoder of the engine (see :class:`EngineSettings`).
        **kwargs: Passed to ``dspy.LM`` (e.g. ``num_retries``, ``rollout_id``).

    Raises:
        ConfigError: unknown local model, or its extra is not installed.
    """
    spec = local_model(name)
    if name not in MODELS:
        raise ConfigError(f"name the embedded model without a digest: {spec.name}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(spec.install_hint())
    path = resolve_gguf(spec, cache_dir)
    shared = ENGINES.get(path, spec, n_ctx=engine.n_ctx, n_threads=engine.n_threads, decoder=engine.decoder)
    return dspy.LM(
        f"{spec.name}@{spec.digest}",
        engine=shared,
        async_engine=AsyncLlamaCppEngine(shared),
        temperature=temperature,
        max_tokens=max_tokens,
        cache=cache,
        **kwargs,
    )
