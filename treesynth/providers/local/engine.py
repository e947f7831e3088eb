"""The embedded engine: one GGUF run in-process by llama.cpp behind DSPy's engine protocol.

* :class:`LlamaCppEngine` -- a DSPy 3.4 engine (``complete(Request) -> Response``). It renders the
  request with the model's own chat template (system message kept: DSPy puts the instructions there),
  turns ``response_format`` into a llama.cpp grammar and decodes with it. The default ``fast`` decoder
  applies the grammar to the top-k candidates first (see :mod:`.decoder`); ``decoder="llama"`` uses
  llama-cpp-python's ``create_completion``.
* :class:`AsyncLlamaCppEngine` -- the async counterpart (runs the sync engine in a worker thread).

The ``dspy.LM`` factory and the process-wide engine registry are in :mod:`.lm`.

Nothing here imports ``llama_cpp`` or a model package at module import time.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspy import lm15
from dspy.clients.engines.base import validate_request

from treesynth.errors import ConfigError
from treesynth.providers.local.chat import ChatMessage, request_messages, template_renderer
from treesynth.providers.local.decoder import (
    SEED_MASK,
    Decoder,
    FastDecoder,
    Generated,
    Sampling,
    check_cancel,
    default_threads,
    prompt_seed,
)
from treesynth.providers.local.grammar import GrammarCache, schema_from_response_format
from treesynth.providers.local.registry import LocalModel

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["DEFAULT_MAX_TOKENS", "AsyncLlamaCppEngine", "LlamaCppEngine"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 512
"""Completion budget used when a request does not set ``max_tokens``."""


class LlamaCppEngine:
    """A DSPy engine running one GGUF in-process with llama-cpp-python.

    One instance holds one ``llama_cpp.Llama`` context, which is not thread-safe: every
    generation runs under ``self._lock``. The model is loaded on first use (or by :meth:`load`)
    and released by :meth:`close`; a later call loads it again.

    Every call starts from an empty KV cache: reusing a cached prompt prefix changes the
    floating-point path and so the sampled text, and the engine promises that the same request
    and seed give the same output whatever ran before.

    Args:
        model_path: The GGUF file.
        spec: The registry entry of the weights (prompt format and sampling defaults).
        n_ctx: Context window (prompt + completion tokens).
        n_threads: CPU threads for generation and prompt evaluation (default: usable cores).
        default_max_tokens: Completion budget when a request sets none.
        decoder: ``"fast"`` (default) applies a JSON grammar to the top-k candidates only (see
            :class:`FastDecoder`, ~2-3x faster under a grammar); ``"llama"`` calls
            ``Llama.create_completion`` (grammar over the whole vocabulary).
        repeat_penalty: llama.cpp repetition penalty over the last 64 tokens (1.0 = off).
        min_p: llama.cpp min-p filter.
    """

    supports_response_schema = True
    supported_params = frozenset({"response_format", "temperature", "max_tokens", "top_p", "top_k", "stop", "seed"})

    def __init__(
        self,
        model_path: Path,
        spec: LocalModel,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        decoder: Decoder = "fast",
        repeat_penalty: float = 1.0,
        min_p: float | None = None,
    ) -> None:
        n_ctx = n_ctx or spec.n_ctx
        if n_ctx < 256:
            raise ConfigError(f"n_ctx={n_ctx} is too small for DSPy prompts; use at least 2048")
        if default_max_tokens < 1:
            raise ConfigError(f"default_max_tokens must be positive, got {default_max_tokens}")
        if decoder not in ("fast", "llama"):
            raise ConfigError(f"decoder must be 'fast' or 'llama', got {decoder!r}")
        self.model_path = Path(model_path)
        self.spec = spec
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.default_max_tokens = default_max_tokens
        self.decoder: Decoder = decoder
        self.repeat_penalty = repeat_penalty
        self.min_p = spec.min_p if min_p is None else min_p
        self.grammars = GrammarCache()
        self.load_seconds: float | None = None
        self._llama: Llama | None = None
        self._fast: FastDecoder | None = None
        self._render: Callable[[list[ChatMessage]], str] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"LlamaCppEngine({self.model_path.name!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads}, "
            f"decoder={self.decoder!r})"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model now (otherwise the first call loads it)."""
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> Llama:
        if self._llama is not None:
            return self._llama
        if importlib.util.find_spec("llama_cpp") is None:
            raise lm15.ConfigurationError(self.spec.install_hint())
        from llama_cpp import Llama

        started = time.perf_counter()
        try:
            llama = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise lm15.ConfigurationError(f"cannot load {self.model_path} with llama.cpp: {exc}") from exc
        self._render = _renderer(llama, self.spec)
        self._llama = llama
        self._fast = FastDecoder(llama) if self.decoder == "fast" else None
        # free the model while the interpreter is whole: llama-cpp-python's __del__ fails during teardown
        atexit.register(self.close)
        self.load_seconds = time.perf_counter() - started
        logger.info("loaded %s in %.2fs (n_ctx=%d)", self.model_path.name, self.load_seconds, self.n_ctx)
        return llama

    def close(self) -> None:
        """Release the model's memory; the next call loads it again."""
        with self._lock:
            llama, self._llama, self._fast = self._llama, None, None
        if llama is not None:
            atexit.unregister(self.close)
            llama.close()

    # -- protocol ----------------------------------------------------------------------------

    def stream(self, request: lm15.Request) -> Iterator[Any]:
        raise lm15.UnsupportedFeatureError("the embedded llama.cpp engine does not stream", feature="stream")

    def complete(self, request: lm15.Request, *, cancel: threading.Event | None = None) -> lm15.Response:
        """Run one completion for a DSPy request (one attempt, one candidate).

        Args:
            request: The canonical DSPy request.
            cancel: Set by :class:`AsyncLlamaCppEngine` when the awaiting task is cancelled (e.g. a
                timeout): a queued call then never starts and a running one stops at the next token.
        """
        validate_request(request)
        if request.tools:
            raise lm15.UnsupportedFeatureError("the embedded model does not call tools", feature="tools")
        messages = request_messages(request)
        with self._lock:
            check_cancel(cancel)
            self._ensure_loaded()
            assert self._render is not None
            prompt = self._render(messages)
            sampling = self._sampling(request.config, prompt)
            generated = self._generate(prompt, sampling, cancel)
        if generated.truncated:
            logger.debug("embedded model hit max_tokens=%d", generated.completion_tokens)
        return lm15.Response(
            id=None,
            model=request.model,
            message=lm15.Message.assistant([lm15.TextPart(generated.text)]),
            finish_reason="length" if generated.truncated else "stop",
            usage=lm15.Usage(input_tokens=generated.prompt_tokens, output_tokens=generated.completion_tokens),
        )

    def _sampling(self, config: lm15.Config, prompt: str) -> Sampling:
        temperature = 0.0 if config.temperature is None else float(config.temperature)
        return Sampling(
            max_tokens=config.max_tokens or self.default_max_tokens,
            temperature=max(temperature, 0.0),
            top_p=self.spec.top_p if config.top_p is None else float(config.top_p),
            top_k=self.spec.top_k if config.top_k is None else int(config.top_k),
            min_p=self.min_p,
            seed=(config.seed & SEED_MASK) if config.seed is not None else prompt_seed(prompt),
            stop=tuple(s for s in config.stop if s),
            repeat_penalty=self.repeat_penalty,
            frequency_penalty=float(config.frequency_penalty or 0.0),
            presence_penalty=float(config.presence_penalty or 0.0),
            schema=schema_from_response_format(config.response_format),
        )

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None) -> Generated:
        from llama_cpp import StoppingCriteriaList

        llama = self._ensure_loaded()
        grammar = self.grammars.get(sampling.schema) if sampling.schema is not None else None
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        room = self.n_ctx - len(tokens)
        if room < 1:
            raise lm15.ContextLengthError(
                f"the prompt has {len(tokens)} tokens but the embedded model's n_ctx is {self.n_ctx}; "
                f"raise n_ctx or shorten the prompt",
                provider="llama.cpp",
            )
        if sampling.max_tokens > room:
            logger.debug("max_tokens %d capped to %d by n_ctx=%d", sampling.max_tokens, room, self.n_ctx)
            sampling = replace(sampling, max_tokens=room)
        try:
            if self._fast is not None:
                out, stopped = self._fast.generate(tokens, sampling, grammar, cancel)
                text = llama.detokenize(out, prev_tokens=tokens).decode("utf-8", errors="ignore")
                for stop in sampling.stop:
                    text = text.split(stop, 1)[0]
                return Generated(text, len(tokens), len(out), truncated=not stopped)
            stopping = None if cancel is None else StoppingCriteriaList([lambda _ids, _scores: cancel.is_set()])
            llama.reset()
            result = llama.create_completion(
                tokens,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                min_p=sampling.min_p,
                stop=list(sampling.stop),
                seed=sampling.seed,
                repeat_penalty=sampling.repeat_penalty,
                frequency_penalty=sampling.frequency_penalty,
                presence_penalty=sampling.presence_penalty,
                grammar=grammar,
                stopping_criteria=stopping,
            )
            check_cancel(cancel)
        except ValueError as exc:
            if "context window" in str(exc):
                raise lm15.ContextLengthError(
                    f"{exc}: lower max_tokens ({sampling.max_tokens}) or raise n_ctx ({self.n_ctx})",
                    provider="llama.cpp",
                ) from exc
            raise lm15.InvalidRequestError(f"llama.cpp refused the request: {exc}", provider="llama.cpp") from exc
        except RuntimeError as exc:
            raise lm15.ServerError(f"llama.cpp failed: {exc}", provider="llama.cpp") from exc
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return Generated(
            str(choice.get("text") or ""),
            int(usage.get("prompt_tokens") or len(tokens)),
            int(usage.get("completion_tokens") or 0),
            truncated=choice.get("finish_reason") == "length",
        )


class AsyncLlamaCppEngine:
    """Async counterpart of :class:`LlamaCppEngine`: runs it in a worker thread.

    The sync engine's lock serialises generation, so concurrent awaits queue up rather than
    corrupting the shared llama.cpp context. A thread cannot be killed, so when the awaiting task
    is cancelled (a timeout) the worker is told to give up: a queued call never starts and a
    running one stops at the next token, which frees the model for the calls behind it.
    """

    def __init__(self, sync_engine: LlamaCppEngine) -> None:
        self.sync_engine = sync_engine

    async def complete(self, request: lm15.Request) -> lm15.Response:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self.sync_engine.complete, request, cancel=cancel)
        finally:
            cancel.set()  # after a cancellation (timeout), stop the worker thread's generation early

    def stream(self, request: lm15.Request) -> AsyncIterator[Any]:
        raise lm15.UnsupportedFeatureError("the embedded llama.cpp engine does not stream", feature="stream")

    async def aclose(self) -> None:
        await asyncio.to_thread(self.sync_engine.close)


# --------------------------------------------------------------------------------------------
# prompt rendering


def _renderer(llama: Llama, spec: LocalModel) -> Callable[[list[ChatMessage]], str]:
    """The prompt renderer for a loaded model: its GGUF chat template, or the registry's fallback."""
    def token_text(token: int) -> str:
        return llama._model.token_get_text(token) if token != -1 else ""

    return template_renderer(llama.metadata.get("tokenizer.chat_template"), eos_token=token_text(llama.token_eos()),
                             bos_token=token_text(llama.token_bos()), fallback=spec.template)
