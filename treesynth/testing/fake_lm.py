"""A deterministic fake language model that answers every treesynth signature with schema-valid output.

It reads the JSON schema DSPy's JSONAdapter sends and the ``[[ ## field ## ]]`` input sections of the
prompt, and makes up varied content seeded by the request, so the same request always gives the same
answer while different seeds (rollouts) give different answers. Use it as model ``test/fake``.

A little noise is deliberate, so that the pipeline's safety nets are exercised: about one criterion
labelling in twelve gives every pivot the same value (a bad split), and about one sample in ten repeats an earlier
sample of the same batch with different case and punctuation (a normalized duplicate). Routing answers
are per sample (an option named in the sample's text, else one picked by the text's hash; about one in
33 is "none fits"), so they do not depend on how samples are batched.

Compilation has something to find: answers are seeded by the user prompt (never the system text), but
when the system text -- where DSPy puts a signature's instruction -- asks for uniqueness in the words of
:data:`UNIQUENESS_HINT` (it mentions both "unique" and "punctuation"), those sample repeats become fresh
samples instead. GEPA's reflection signature (output field ``new_instruction``) is answered with the
current instruction, plus :data:`UNIQUENESS_HINT` when the feedback it is shown mentions duplicates.

``TREESYNTH_FAKE_LATENCY_MS`` adds a simulated latency to every call. ``TREESYNTH_FAKE_HOLD`` names a file:
while it exists, every call waits (the first to wait creates ``<file>.held``), so a test can freeze a run in
another process at a known point -- e.g. to kill it mid-run -- by events instead of by timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from treesynth.models import stable_seed

_NUMBERED = re.compile(r"^\d+\. ")
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", re.S)

# criterion -> (values, unbounded). Unbounded criteria grow infinite children.
CRITERIA: dict[str, tuple[list[str], bool]] = {
    "difficulty": (["easy", "medium", "hard"], False),
    "operation": (["addition", "subtraction", "multiplication", "division"], False),
    "setting": (["school", "farm", "grocery store", "kitchen", "park", "factory", "library"], False),
    "number range": (["single digits", "tens", "hundreds", "thousands", "decimals"], False),
    "format": (["short question", "multi-step story", "comparison", "table lookup"], False),
    "character name": ([f"person {c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"], True),
    "unit of measure": (["meters", "kilograms", "liters", "hours", "dollars", "cups"], False),
}

_WORDS = [
    "apple", "basket", "train", "garden", "river", "coin", "ticket", "marble", "pencil", "bakery", "cookie",
    "bicycle", "window", "bottle", "ladder", "orchard", "notebook", "candle", "button", "rocket", "blanket",
    "pizza", "puzzle", "lantern", "teacup", "wagon", "violin", "meadow", "harbor", "castle", "rabbit", "turtle",
    "parrot", "tulip", "cactus", "glacier", "canyon", "desert", "island", "village", "market", "bridge",
    "tunnel", "engine", "robot", "planet", "comet", "galaxy", "crystal", "fossil", "volcano", "forest",
    "dolphin", "falcon", "tiger", "zebra", "koala", "saves", "shares", "buys", "sells", "counts", "splits",
    "doubles", "measures", "collects", "trades", "builds", "paints", "bakes", "plants",
]

UNIQUENESS_HINT = ("Never repeat a sample: every sample in the batch must be unique, even after ignoring case "
                   "and punctuation.")
"""The instruction sentence that stops the fake model's normalized duplicates (see the module docstring)."""


def asks_uniqueness(system: str | None) -> bool:
    """Whether an instruction asks for unique samples in the fake model's trigger words."""
    text = (system or "").casefold()
    return "unique" in text and "punctuation" in text


def latency_seconds() -> float:
    """Simulated latency from ``TREESYNTH_FAKE_LATENCY_MS`` (0 when unset or invalid)."""
    try:
        return max(0.0, float(os.environ.get("TREESYNTH_FAKE_LATENCY_MS", "0")) / 1000.0)
    except ValueError:
        return 0.0


HOLD_POLL_SECONDS = 0.02
"""How often a held call looks at the hold file again."""


def hold_file() -> Path | None:
    """The hold file named by ``TREESYNTH_FAKE_HOLD`` (``None`` when unset)."""
    name = os.environ.get("TREESYNTH_FAKE_HOLD")
    return Path(name) if name else None


def _holding(hold: Path | None) -> bool:
    """Whether a call must (still) wait; marks the run as held the first time it must."""
    if hold is None or not hold.exists():
        return False
    hold.with_name(hold.name + ".held").touch(exist_ok=True)
    return True


def parse_inputs(prompt: str) -> dict[str, Any]:
    """Extract ``[[ ## name ## ]]`` input sections of a DSPy prompt: numbered lines become lists, other values
    are JSON-decoded where possible."""
    inputs: dict[str, Any] = {}
    for name, raw in _SECTION.findall(prompt):
        text = raw.strip()
        if text == "(none)":
            inputs[name] = []
            continue
        lines = text.split("\n")
        if all(_NUMBERED.match(line) for line in lines):
            inputs[name] = [_NUMBERED.sub("", line) for line in lines]
            continue
        try:
            inputs[name] = json.loads(text)
        except json.JSONDecodeError:
            inputs[name] = text
    return inputs


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = root["$defs"][ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


def _sentence(rng: random.Random, anchor: list[str], words: int = 9) -> str:
    body = " ".join(rng.choice(_WORDS) for _ in range(words))
    ctx = f" ({'; '.join(anchor)})" if anchor else ""
    return f"{body.capitalize()} #{rng.randrange(10**6)}{ctx}."


def _items(rng: random.Random, item_schema: dict[str, Any], root: dict[str, Any], count: int,
           anchor: list[str], noisy: bool, unique: bool = False) -> list[Any]:
    item_schema = _resolve(item_schema, root)
    out: list[Any] = []
    for i in range(count):
        if noisy and i > 0 and rng.random() < 0.1 and not unique:
            prev = out[rng.randrange(len(out))]
            out.append(_shout(prev))
        elif item_schema.get("type") == "object":
            out.append({name: _sentence(rng, anchor, 6) for name in item_schema.get("properties", {})})
        else:
            out.append(_sentence(rng, anchor))
    return out


def _shout(value: Any) -> Any:
    """A normalized duplicate: same words, different case and trailing punctuation."""
    if isinstance(value, dict):
        return {k: _shout(v) for k, v in value.items()}
    return str(value).upper().rstrip(".") + "!!"


def _list_key(schema: dict[str, Any], root: dict[str, Any]) -> str | None:
    """The one list property of a batch wrapper (``{"samples": [...]}``), if ``schema`` is one."""
    properties = _resolve(schema, root).get("properties", {})
    if len(properties) != 1:
        return None
    (key, value), = properties.items()
    return key if _resolve(value, root).get("type") == "array" else None


def _batch(rng: random.Random, schema: dict[str, Any], root: dict[str, Any], inputs: dict[str, Any],
           noisy: bool, unique: bool = False) -> dict[str, Any]:
    key = _list_key(schema, root) or "samples"
    items = _resolve(schema, root)["properties"][key]
    count = int(items.get("minItems", 3))
    anchor = [str(s) for s in inputs.get("subspace", [])]
    return {key: _items(rng, items["items"], root, count, anchor, noisy, unique)}


def _reflect(inputs: dict[str, Any]) -> str:
    """GEPA's reflection: the current instruction, asking for uniqueness when the feedback shows duplicates."""
    current = str(inputs.get("current_instruction", "")).strip()
    feedback = json.dumps(inputs.get("examples_with_feedback", ""), ensure_ascii=False).casefold()
    if "duplicate" in feedback and not asks_uniqueness(current):
        return f"{current}\n\n{UNIQUENESS_HINT}".strip()
    return current


def _proposal(rng: random.Random, schema: dict[str, Any], root: dict[str, Any], inputs: dict[str, Any]
              ) -> dict[str, Any]:
    excluded = {str(c).casefold() for c in inputs.get("excluded_criteria", [])}
    options = [c for c in CRITERIA if c not in excluded] or ["variant"]
    criterion = rng.choice(options)
    vocab = CRITERIA.get(criterion, ([f"variant {i}" for i in range(8)], False))[0]
    pivots = list(inputs.get("pivots", [])) or ["x", "y"]
    max_values = int(_resolve(schema, root)["properties"]["values"].get("maxItems", 4))
    n_values = max(2, min(len(pivots), max_values, len(vocab), rng.randint(2, 4)))
    return {"criterion": criterion, "values": rng.sample(vocab, n_values)}


def _labels(rng: random.Random, schema: dict[str, Any], root: dict[str, Any], inputs: dict[str, Any]
            ) -> dict[str, Any]:
    """Pivots labelled round-robin; about one answer in twelve gives every pivot the same value (a bad split)."""
    item = _resolve(_resolve(schema, root)["properties"]["labels"]["items"], root)
    values = [str(v) for v in item.get("enum", inputs.get("values", ["x"]))]
    count = len(inputs.get("pivots", [])) or 2
    if rng.random() < 1 / 12:
        return {"labels": [values[0]] * count}
    return {"labels": [values[i % len(values)] for i in range(count)]}


def _coverage(rng: random.Random, schema: dict[str, Any], root: dict[str, Any], inputs: dict[str, Any]
              ) -> dict[str, Any]:
    criterion = str(inputs.get("criterion", "")).casefold()
    vocab, unbounded = CRITERIA.get(criterion, ([], False))
    known = {str(v).casefold() for v in inputs.get("known_values", [])}
    cap = _resolve(schema, root)["properties"]["new_values"].get("maxItems", len(vocab))
    missing = [v for v in vocab if v.casefold() not in known][:cap]
    return {"new_values": missing, "unbounded": unbounded}


def _route(inputs: dict[str, Any]) -> dict[str, Any]:
    """Per-sample, order-independent routing: an option named in the text, else one chosen by its hash."""
    options = [str(o) for o in inputs.get("options", [])]
    real = [o for o in options if o != "none fits"] or options
    items = []
    for number, text in enumerate(inputs.get("samples", []), start=1):
        lowered = str(text).casefold()
        named = [o for o in real if o.casefold() in lowered]
        pick = stable_seed(str(text))
        if named:
            value = max(named, key=len)
        elif "none fits" in options and pick % 33 == 0:
            value = "none fits"
        else:
            value = real[pick % len(real)]
        items.append({"sample": number, "value": value})
    return {"items": items}


def fake_answer(prompt: str, schema: dict[str, Any] | None, seed: int | None, *, system: str | None = None) -> str:
    """The fake model's JSON answer to a DSPy JSONAdapter ``prompt`` constrained by ``schema``.

    ``system`` (the system text, which holds the instruction) only matters when it asks for uniqueness.
    """
    inputs = parse_inputs(prompt)
    rng = random.Random(stable_seed(prompt, seed))
    if not schema or "properties" not in schema:
        return json.dumps({"answer": _sentence(rng, [])})
    root = schema
    answer: dict[str, Any] = {}
    for field, field_schema in schema["properties"].items():
        if field == "proposal":
            answer[field] = _proposal(rng, field_schema, root, inputs)
        elif field == "classification":
            answer[field] = _labels(rng, field_schema, root, inputs)
        elif field == "coverage":
            answer[field] = _coverage(rng, field_schema, root, inputs)
        elif field == "assignments":
            answer[field] = _route(inputs)
        elif field == "new_instruction":
            answer[field] = _reflect(inputs)
        elif _list_key(field_schema, root) is not None:  # examples (pivots), batch (samples), personas...
            answer[field] = _batch(rng, field_schema, root, inputs, noisy=field == "batch",
                                   unique=asks_uniqueness(system))
        else:
            answer[field] = _sentence(rng, [])
    return json.dumps(answer)


class FakeEngine:
    """DSPy engine (``complete(Request) -> Response``) backed by :func:`fake_answer`."""

    supports_response_schema = True
    supported_params = frozenset({"response_format", "temperature", "max_tokens", "seed", "top_p"})

    def __init__(self) -> None:
        """Create an engine; it holds no state besides a call counter."""
        self.calls = 0

    def complete(self, request: Any) -> Any:
        """Answer one request (blocking while held and for the simulated latency)."""
        hold = hold_file()
        while _holding(hold):
            time.sleep(HOLD_POLL_SECONDS)
        delay = latency_seconds()
        if delay:
            time.sleep(delay)
        return self._respond(request)

    def _respond(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        self.calls += 1
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        prompt = "\n".join(m.text or "" for m in request.messages)
        response_format = request.config.response_format or {}
        text = fake_answer(prompt, response_format.get("schema"), request.config.seed, system=system)
        usage = Usage(input_tokens=(len(system) + len(prompt)) // 4, output_tokens=len(text) // 4)
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=usage)

    def stream(self, request: Any) -> Iterator[Any]:
        """Streaming is not supported by the fake model."""
        raise NotImplementedError("the fake model does not stream")

    def close(self) -> None:
        """Nothing to release."""


class AsyncFakeEngine:
    """Async twin of :class:`FakeEngine` that sleeps without blocking the event loop."""

    def __init__(self, sync: FakeEngine) -> None:
        """Wrap a sync engine (shared call counter)."""
        self.sync = sync

    async def complete(self, request: Any) -> Any:
        """Answer one request once no longer held, after the simulated latency."""
        hold = hold_file()
        while _holding(hold):
            await asyncio.sleep(HOLD_POLL_SECONDS)
        delay = latency_seconds()
        if delay:
            await asyncio.sleep(delay)
        return self.sync._respond(request)

    def stream(self, request: Any) -> Any:
        """Streaming is not supported by the fake model."""
        raise NotImplementedError("the fake model does not stream")

    async def aclose(self) -> None:
        """Nothing to release."""
