"""Test helpers: scripted LMs built on the fake model, and run-directory readers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy

from treesynth.config import ROLES
from treesynth.testing.fake_lm import AsyncFakeEngine, FakeEngine, fake_answer

Answer = Callable[[str, dict[str, Any] | None, int | None], str]


class ScriptedEngine(FakeEngine):
    """The fake engine with a replaceable answer function; records every request's seed and output field."""

    def __init__(self, answer: Answer = fake_answer) -> None:
        super().__init__()
        self.answer = answer
        self.seen: list[tuple[str, int | None]] = []

    def _respond(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        self.calls += 1
        prompt = "\n".join(m.text or "" for m in request.messages)
        schema = (request.config.response_format or {}).get("schema")
        field = next(iter((schema or {}).get("properties", {"?": 0})))
        self.seen.append((field, request.config.seed))
        text = self.answer(prompt, schema, request.config.seed)
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=len(prompt) // 4, output_tokens=len(text) // 4))


def scripted_lms(engine: ScriptedEngine) -> dict[str, dspy.LM]:
    lm = dspy.LM("test/scripted", engine=engine, async_engine=AsyncFakeEngine(engine), cache=False,
                 temperature=1.0, max_tokens=512, num_retries=0)  # as make_lm: the gateway retries
    return dict.fromkeys(ROLES, lm)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def leaf_index(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """leaf id -> {"node": leaf, "path": [(criterion, value-or-pool, infinite)]}."""
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], path: list[tuple[str, Any, bool]]) -> None:
        if not node["children"]:
            out[node["id"]] = {"node": node, "path": path}
        for child in node["children"]:
            walk(child, [*path, (node["criterion"], child["value"], child["infinite"])])

    walk(tree["root"], [])
    return out
