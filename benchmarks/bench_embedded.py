"""Embedded model speed: treesynth's llama.cpp engine vs raw llama-cpp-python on the same prompts.

    python benchmarks/bench_embedded.py [--model local/qwen2.5-coder-1.5b-instruct] [--prompts 6] [--max-tokens 96]

For each prompt and seed, in one process and alternating the order between repetitions: raw
``Llama.create_completion`` (the model's own prompt format, same sampling), the treesynth engine with llama.cpp's own
sampler (``decoder="llama"``) and with the default top-k-first grammar decoder (``decoder="fast"``),
unconstrained and under a JSON-schema grammar. Prints tokens per second and the ratio to raw.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable

from dspy.lm15 import Config, Message, Request

from treesynth.providers import local

SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["samples"],
    "properties": {"samples": {"type": "object", "additionalProperties": False, "required": ["items"],
                               "properties": {"items": {"type": "array", "items": {"type": "string"},
                                                        "minItems": 3, "maxItems": 3}}}},
}
TOPICS = ["a cat", "a harbour", "a robot", "a river", "a clock", "a bakery", "a comet", "a violin"]

Generate = Callable[[str, int, bool], tuple[float, int, str]]


def raw_runner(engine: local.LlamaCppEngine, max_tokens: int) -> Generate:
    from llama_cpp import LlamaGrammar

    llama = engine._llama
    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)

    def run(prompt: str, seed: int, constrained: bool) -> tuple[float, int, str]:
        request = Request(model="bench", messages=(Message.user(prompt),))
        text = engine._render(local.request_messages(request))  # type: ignore[misc]
        tokens = llama.tokenize(text.encode(), add_bos=True, special=True)
        llama.reset()
        started = time.perf_counter()
        out = llama.create_completion(tokens, max_tokens=max_tokens, temperature=0.8, top_k=engine.spec.top_k,
                                      top_p=engine.spec.top_p, min_p=engine.spec.min_p,
                                      seed=seed, grammar=grammar if constrained else None)
        return time.perf_counter() - started, out["usage"]["completion_tokens"], out["choices"][0]["text"]

    return run


def engine_runner(engine: local.LlamaCppEngine, max_tokens: int) -> Generate:
    def run(prompt: str, seed: int, constrained: bool) -> tuple[float, int, str]:
        response_format = {"type": "json_schema", "schema": SCHEMA, "name": "out", "strict": True}
        request = Request(model="bench", messages=(Message.user(prompt),),
                          config=Config(max_tokens=max_tokens, temperature=0.8, seed=seed,
                                        response_format=response_format if constrained else None))
        started = time.perf_counter()
        out = engine.complete(request)
        return time.perf_counter() - started, int(out.usage.output_tokens or 0), out.text

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--model", default=local.DEFAULT_LOCAL_MODEL, choices=sorted(local.MODELS))
    args = parser.parse_args()
    spec = local.MODELS[args.model]
    path = local.resolve_gguf(spec)
    llama_engine = local.LlamaCppEngine(path, spec, decoder="llama")
    fast_engine = local.LlamaCppEngine(path, spec, decoder="fast")
    llama_engine.load()
    fast_engine.load()
    runners = {"raw llama-cpp-python": raw_runner(llama_engine, args.max_tokens),
               "treesynth engine (llama sampler)": engine_runner(llama_engine, args.max_tokens),
               "treesynth engine (fast decoder)": engine_runner(fast_engine, args.max_tokens)}
    prompts = [f"Write three short sentences about {topic}." for topic in TOPICS[: args.prompts]]
    totals: dict[tuple[str, bool], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for repetition in range(2):
        order = list(runners.items()) if repetition == 0 else list(runners.items())[::-1]
        for constrained in (False, True):
            for name, run in order:
                for seed, prompt in enumerate(prompts):
                    seconds, tokens, text = run(prompt, seed, constrained)
                    total = totals[(name, constrained)]
                    total[0] += seconds
                    total[1] += tokens
                    total[2] += _parses(text) if constrained else 0
    for constrained in (False, True):
        raw_seconds, raw_tokens, _ = totals[("raw llama-cpp-python", constrained)]
        raw_rate = raw_tokens / raw_seconds
        label = "under a JSON-schema grammar" if constrained else "unconstrained"
        print(f"{label}:")
        for name in runners:
            seconds, tokens, parsed = totals[(name, constrained)]
            rate = tokens / seconds
            extra = f", parsed {int(parsed)}/{2 * len(prompts)}" if constrained else ""
            print(f"  {name:34s} {rate:6.1f} tok/s  {rate / raw_rate:5.2f}x raw{extra}")


def _parses(text: str) -> float:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return 0.0
    return 1.0


if __name__ == "__main__":
    main()
