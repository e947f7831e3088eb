"""Pipeline behaviour through the Python API on scripted models."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import dspy
import pytest
from support import ScriptedEngine, leaf_index, read_jsonl, scripted_lms

from treesynth.config import ROLES
from treesynth.models import FirstSplit, Task, normalize
from treesynth.pipeline import TreeSynth
from treesynth.program import TreeSynthProgram
from treesynth.synthesis.filler import Leaf, LeafFiller
from treesynth.testing.fake_lm import AsyncFakeEngine, fake_answer


def test_infinite_children_draw_concrete_values_per_call(tmp_path: Path, fake_config: Any) -> None:
    # width 2: every criterion of the fake model with more than two values becomes an infinite child
    cfg = fake_config(**{"tree.width": 2, "tree.depth": 2, "synthesis.samples": 60})
    result = TreeSynth(cfg).run("short stories for children", tmp_path / "r")
    tree = json.loads((tmp_path / "r" / "tree.json").read_text())
    infinite = [n for n in result.tree.root.walk() if n.infinite]
    assert infinite and all(isinstance(n.value, list) and len(n.value) > 2 for n in infinite)
    assert all(len(n.children) <= 2 for n in result.tree.root.walk())
    samples = read_jsonl(tmp_path / "r" / "samples.jsonl")
    leaves = leaf_index(tree)
    drawn: dict[tuple[str, int], set[str]] = {}
    for sample in samples:
        for i, (step, (_, value, is_inf)) in enumerate(zip(sample["path"], leaves[sample["leaf_id"]]["path"],
                                                           strict=True)):
            if is_inf:
                assert step["value"] in value
                drawn.setdefault((sample["leaf_id"], i), set()).add(step["value"])
    assert drawn and max(len(v) for v in drawn.values()) > 1, "infinite values were not drawn per call"
    assert len(samples) == 60


def test_leaf_calls_get_distinct_seeds_and_duplicates_are_removed(tmp_path: Path, fake_config: Any) -> None:
    engine = ScriptedEngine()
    result = TreeSynth(fake_config(), lms=scripted_lms(engine)).run("trivia questions", tmp_path / "r")
    leaf_seeds = [seed for field, seed in engine.seen if field == "batch"]
    assert len(leaf_seeds) == len(set(leaf_seeds)) > 1
    assert result.summary["counts"]["duplicates_removed"] > 0  # the fake emits normalized duplicates
    texts = [normalize(s.text or "") for s in result.samples()]
    assert len(texts) == len(set(texts)) == 40


def test_collapsed_model_ends_partial_with_shortfall_report(tmp_path: Path, fake_config: Any) -> None:
    def same_samples(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        answer = json.loads(fake_answer(prompt, schema, seed))
        if "batch" in answer:
            answer["batch"]["samples"] = [f"the very same sample, number {i}"  # real words: passes the gate
                                          for i in range(len(answer["batch"]["samples"]))]
        return json.dumps(answer)

    cfg = fake_config(**{"synthesis.samples": 30})
    result = TreeSynth(cfg, lms=scripted_lms(ScriptedEngine(same_samples))).run("jokes", tmp_path / "r")
    counts = result.summary["counts"]
    assert result.status == "partial"
    # only 4 distinct texts exist, and they differ in one digit: near-duplicates of the first one kept
    assert counts["samples"] == 1 and counts["shortfall"] == 29 and counts["near_duplicates"] >= 3
    assert "resume" in result.summary["resume"]
    leaf_calls = next(s for s in result.summary["llm"]["by_stage"] if s["stage"] == "leaf")["calls"]
    assert leaf_calls <= counts["leaves"] * 20, "leaf retries must be bounded"


def test_structured_fields(tmp_path: Path, fake_config: Any) -> None:
    task = Task(description="math word problems", fields={"question": "the problem", "answer": "final answer"})
    result = TreeSynth(fake_config()).run(task, tmp_path / "r")
    samples = read_jsonl(tmp_path / "r" / "samples.jsonl")
    assert len(samples) == 40
    assert all("text" not in s and set(s["fields"]) == {"question", "answer"} for s in samples)
    assert all(s["fields"]["question"] and s["fields"]["answer"] for s in samples)
    assert result.status == "complete"


def test_predefined_first_split_skips_root_llm_split(tmp_path: Path, fake_config: Any) -> None:
    subjects = ["Algebra", "Geometry", "Number Theory"]
    task = Task(description="competition math", first_split=FirstSplit(criterion="subject", values=subjects))
    engine = ScriptedEngine()
    result = TreeSynth(fake_config(**{"tree.width": 3}), lms=scripted_lms(engine)).run(task, tmp_path / "r")
    root = result.tree.root
    assert root.criterion == "subject" and [c.value for c in root.children] == subjects
    assert root.pivots == []
    by_stage = {(s["stage"]) for s in result.summary["llm"]["by_stage"]}
    assert "criterion" in by_stage  # deeper nodes still split with the LLM
    assert all(s["path"][0]["value"] in subjects for s in read_jsonl(tmp_path / "r" / "samples.jsonl"))


def test_bad_split_is_retried_then_node_becomes_leaf_with_reason(tmp_path: Path, fake_config: Any) -> None:
    # labels are one allowed value per pivot (an enum), so a pivot can no longer take two values; the bad
    # split a labelling can still make is giving every pivot the same value (no separation)
    def inseparable(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        answer = json.loads(fake_answer(prompt, schema, seed))
        if "classification" in answer:
            labels = answer["classification"]["labels"]
            answer["classification"]["labels"] = [labels[0]] * len(labels)
        return json.dumps(answer)

    engine = ScriptedEngine(inseparable)
    result = TreeSynth(fake_config(**{"tree.split_attempts": 2}), lms=scripted_lms(engine)).run("haiku",
                                                                                              tmp_path / "r")
    root = result.tree.root
    assert root.is_leaf and root.leaf_reason is not None
    assert "no valid split after 2 attempts" in root.leaf_reason
    assert "every pivot took the same value" in root.leaf_reason
    # each attempt is one proposal call and one labelling call
    assert sum(1 for field, _ in engine.seen if field == "proposal") == 2
    assert sum(1 for field, _ in engine.seen if field == "classification") == 2
    assert result.summary["counts"]["samples"] == 40


def test_provider_outage_stops_partial_and_resume_completes(tmp_path: Path, fake_config: Any) -> None:
    def down(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        raise ConnectionError("provider unreachable")

    out = tmp_path / "r"
    first = TreeSynth(fake_config(), lms=scripted_lms(ScriptedEngine(down))).run("riddles", out)
    assert first.status == "failed" and "pivots call for node root failed" in first.summary["error"]
    stored = json.loads((out / "run.json").read_text())
    assert stored["status"] == "failed" and "resume" in stored["resume"]
    assert stored["counts"]["leaves"] == 0 and stored["counts"]["samples"] == 0  # the root was never expanded
    second = TreeSynth(fake_config(), lms=scripted_lms(ScriptedEngine())).run("riddles", out)
    assert second.status == "complete" and second.summary["counts"]["samples"] == 40


def test_unexpected_error_writes_failed_run_json_and_resume_completes(tmp_path: Path, fake_config: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_fill(self: LeafFiller, leaf: Leaf) -> None:
        raise RuntimeError("disk on fire")

    out = tmp_path / "r"
    with monkeypatch.context() as patch:
        patch.setattr(LeafFiller, "fill", broken_fill)
        with pytest.raises(ExceptionGroup) as caught:
            TreeSynth(fake_config()).run("riddles", out)
    assert caught.group_contains(RuntimeError, match="disk on fire")
    stored = json.loads((out / "run.json").read_text())
    assert stored["status"] == "failed" and "RuntimeError: disk on fire" in stored["error"]
    assert stored["counts"]["nodes"] > 1 and stored["counts"]["samples"] == 0  # the tree as far as it grew
    tree_calls = sum(r["calls"] for r in stored["llm"]["by_stage"] if r["stage"] != "leaf")
    second = TreeSynth(fake_config()).run("riddles", out)
    assert second.status == "complete" and second.summary["counts"]["samples"] == 40
    assert sum(r["calls"] for r in second.summary["llm"]["by_stage"] if r["stage"] != "leaf") == tree_calls


class StartOrder(AsyncFakeEngine):
    """Records the output field of every call as it starts; the first pivots (``examples``) call is held back
    until a leaf-synthesis (``batch``) call has started -- an event, not a delay, so load cannot reorder it."""

    RELEASE_AFTER = 30.0
    """Only reached when no leaf call starts while a branch is held (a level barrier): the test then fails."""

    def __init__(self, sync: ScriptedEngine) -> None:
        super().__init__(sync)
        self.started: list[str] = []
        self.leaf_started = asyncio.Event()

    async def complete(self, request: Any) -> Any:
        schema = (request.config.response_format or {}).get("schema") or {}
        field = next(iter(schema.get("properties", {"?": 0})))
        self.started.append(field)
        if field == "batch":
            self.leaf_started.set()
        elif field == "examples" and self.started.count("examples") == 1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.leaf_started.wait(), self.RELEASE_AFTER)
        await asyncio.sleep(0)
        return self.sync._respond(request)


def test_no_level_barrier_leaf_synthesis_starts_while_the_tree_grows(tmp_path: Path, fake_config: Any) -> None:
    engine = ScriptedEngine()
    order = StartOrder(engine)
    lm = dspy.LM("test/scripted", engine=engine, async_engine=order, cache=False, temperature=1.0, max_tokens=512)
    # a predefined first split: three depth-1 branches expand with the LLM, one of them held back
    task = Task(description="riddles", first_split=FirstSplit(criterion="theme", values=["animals", "food", "sea"]))
    result = TreeSynth(fake_config(), lms=dict.fromkeys(ROLES, lm)).run(task, tmp_path / "r")
    assert result.status == "complete" and set(order.started) >= {"examples", "proposal", "classification",
                                                                  "coverage", "batch"}
    last_tree_call = max(i for i, field in enumerate(order.started)
                         if field in ("proposal", "classification", "coverage"))
    first_leaf_call = order.started.index("batch")
    assert first_leaf_call < last_tree_call, "leaf synthesis waited for the whole tree (a level barrier)"


def test_program_exposes_every_predictor_once() -> None:
    names = [name for name, _ in TreeSynthProgram().named_predictors()]
    assert names == ["pivots.generate", "criterion.determine", "criterion.classify", "coverage.cover",
                     "leaf.synthesize"]


def test_compiled_instruction_reaches_the_prompt(tmp_path: Path, fake_config: Any) -> None:
    program = TreeSynthProgram()
    marker = "Write samples as a pirate would."
    program.leaf.synthesize.signature = program.leaf.synthesize.signature.with_instructions(marker)
    prompts: list[str] = []

    def spy(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        return fake_answer(prompt, schema, seed)

    engine = ScriptedEngine(spy)
    original = engine._respond

    def respond(request: Any) -> Any:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        prompts.append(system)
        return original(request)

    engine._respond = respond  # type: ignore[method-assign]
    TreeSynth(fake_config(), lms=scripted_lms(engine), program=program).run("sea shanties", tmp_path / "r")
    assert any(marker in p for p in prompts)


@pytest.mark.parametrize("samples", [1, 7])
def test_tiny_targets_are_exact(tmp_path: Path, fake_config: Any, samples: int) -> None:
    result = TreeSynth(fake_config(**{"synthesis.samples": samples})).run("limericks", tmp_path / "r")
    assert result.summary["counts"]["samples"] == samples and result.status == "complete"
