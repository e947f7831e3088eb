"""Embedded offline models run in-process by llama.cpp: registry, GGUF assembly, chat rendering, grammar,
decoder and engine, one module each. ``import treesynth.providers.local`` imports no llama.cpp code."""

from treesynth.providers.local import chat
from treesynth.providers.local.assembly import default_model_dir, resolve_gguf
from treesynth.providers.local.chat import gemma_turns, render_gemma_prompt, request_messages
from treesynth.providers.local.engine import DEFAULT_MAX_TOKENS, AsyncLlamaCppEngine, LlamaCppEngine
from treesynth.providers.local.grammar import GrammarCache, schema_from_response_format
from treesynth.providers.local.lm import ENGINES, EngineSettings, make_local_lm
from treesynth.providers.local.registry import (
    DEFAULT_LOCAL_MODEL,
    LOCAL_EXTRA_HINT,
    MODELS,
    QWEN_CODER_1_5B,
    TINY_GEMMA,
    LocalModel,
    Part,
    local_model,
    local_model_available,
)

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "DEFAULT_MAX_TOKENS",
    "ENGINES",
    "LOCAL_EXTRA_HINT",
    "MODELS",
    "QWEN_CODER_1_5B",
    "TINY_GEMMA",
    "AsyncLlamaCppEngine",
    "EngineSettings",
    "GrammarCache",
    "LlamaCppEngine",
    "LocalModel",
    "Part",
    "chat",
    "default_model_dir",
    "gemma_turns",
    "local_model",
    "local_model_available",
    "make_local_lm",
    "render_gemma_prompt",
    "request_messages",
    "resolve_gguf",
    "schema_from_response_format",
]
