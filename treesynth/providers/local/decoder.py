"""Token-by-token decoding for the embedded engine: sampling parameters and the fast grammar decoder."""

from __future__ import annotations

import hashlib
import math
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dspy import lm15

if TYPE_CHECKING:
    from llama_cpp import Llama, LlamaGrammar

__all__ = ["Decoder", "FastDecoder", "Generated", "Sampling", "check_cancel", "default_threads", "prompt_seed"]

SEED_MASK = 0x7FFFFFFF


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise lm15.TimeoutError("the embedded model call was abandoned by its caller", provider="llama.cpp")


def prompt_seed(prompt: str) -> int:
    return int.from_bytes(hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest(), "big") & SEED_MASK


@dataclass(frozen=True)
class Sampling:
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
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool


Decoder = Literal["fast", "llama"]


class FastDecoder:
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
        self, prompt: list[int], sampling: Sampling, grammar: LlamaGrammar | None, cancel: threading.Event | None
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
                check_cancel(cancel)
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
