"""Compiling on the fake model: node examples, sync stages, GEPA raising the held-out leaf score, program files,
and proof that the compiled instruction reaches the prompt of a real run."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
import pytest
from dspy.utils.exceptions import LMServerError
from support import ScriptedEngine, scripted_lms

from treesynth.aio import run_sync
from treesynth.config import RunConfig
from treesynth.errors import ConfigError, ProviderError
from treesynth.models import Task
from treesynth.optimizers import CompileOptions, ProgramMismatchError, compile_program, load_program, save_program
from treesynth.optimizers.examples import INPUTS, agrow, node_examples, split_examples
from treesynth.optimizers.stages import CallTally, NodeStage, StageRuntime, copy_compiled
from treesynth.pipeline import TreeSynth
from treesynth.program import TreeSynthProgram
from treesynth.providers import RetryPolicy, make_role_lms
from treesynth.record import read_record
from treesynth.testing.fake_lm import UNIQUENESS_HINT, fake_answer

TASK = Task(description="GSM8K-style grade-school math word problems")


@pytest.fixture
def small(fake_config: Callable[..., RunConfig]) -> RunConfig:
    # width 8 keeps the fake's criteria finite, so the tree has many leaves; seed 1 makes the root split on
    # one of them (at seed 0 the root takes the unbounded "character name": one infinite child, six leaves)
    return fake_config(**{"tree.width": 8, "synthesis.samples": 40, "synthesis.samples_per_call": 5, "seed": 1})


def runtime(config: RunConfig) -> StageRuntime:
    return StageRuntime(make_role_lms(config.model), RetryPolicy(), CallTally())


def test_node_examples_mirror_the_pipeline_inputs(tmp_path: Path, small: RunConfig) -> None:
    grown = run_sync(lambda: agrow([TASK], small, tmp_path))
    sets = node_examples(grown, draws=2)
    root = grown[0].tree.root
    for module in ("criterion", "coverage", "leaf"):
        assert sets[module], module
        for example in sets[module]:
            assert set(example.inputs()) == {*INPUTS[module], "seed", "node_id"}
    roots = [e for e in sets["criterion"] if e.node_id == "root"]
    assert len(roots) == 2 and roots[0].pivots == root.pivots and roots[0].subspace == []
    assert roots[0].seed != roots[1].seed  # draws are distinct seeds of the same node
    coverage = next(e for e in sets["coverage"] if e.node_id == "root")
    # an infinite child carries the node's whole value pool; finite children carry one value each
    values = ([str(v) for v in root.children[0].value] if root.children[0].infinite
              else [str(c.value) for c in root.children])
    assert coverage.known_values + coverage.held_out == values and coverage.criterion == root.criterion
    leaf = sets["leaf"][0]
    assert leaf.count == 5 and leaf.subspace and leaf.own_value in leaf.subspace[-1]
    assert leaf.own_value not in leaf.sibling_values and leaf.references
    parts = split_examples(sets["leaf"], seed=0)
    groups = [{e.group for e in part} for part in (parts.train, parts.val, parts.test)]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(parts.train) + len(parts.val) + len(parts.test) == len(sets["leaf"])


def test_stage_is_a_sync_view_of_the_same_module(small: RunConfig) -> None:
    program = TreeSynthProgram()
    inputs = {"task": TASK.description, "subspace": ["operation: addition"], "avoid": [], "count": 4, "fields": (),
              "seed": 7}
    with runtime(small) as rt, dspy.context(adapter=dspy.JSONAdapter()):
        stage = NodeStage(program, "leaf", rt)
        assert [name for name, _ in stage.named_predictors()] == ["leaf.synthesize"]
        assert stage.leaf is program.leaf
        sync = stage(**inputs)

        async def inside_a_loop() -> dspy.Prediction:
            return stage(**inputs)  # a sync call from async code runs on the runtime's loop thread

        nested = asyncio.run(inside_a_loop())
    assert len(sync.samples) == 4 and nested.samples == sync.samples
    assert rt.tally.snapshot()["calls"] == 2
    twin = copy.deepcopy(stage)
    assert twin.leaf is not program.leaf and twin._runtime is stage._runtime
    twin.leaf.synthesize.signature = twin.leaf.synthesize.signature.with_instructions("Be brief.")
    assert copy_compiled(twin, program) == ["leaf.synthesize"]
    assert program.leaf.synthesize.signature.instructions == "Be brief."


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="--demos"):
        CompileOptions(optimizer="bootstrap")
    with pytest.raises(ConfigError, match="unknown optimizer"):
        CompileOptions(optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pivots"):
        CompileOptions(modules=("pivots",))  # type: ignore[arg-type]


def test_fake_reflection_adds_the_hint_only_for_duplicate_feedback() -> None:
    schema = {"properties": {"new_instruction": {"type": "string"}}}

    def prompt(feedback: str) -> str:
        return (f"[[ ## current_instruction ## ]]\nWrite samples.\n\n[[ ## examples_with_feedback ## ]]\n"
                f'[{{"Feedback": "{feedback}"}}]\n\nRespond with a JSON object')

    asked = json.loads(fake_answer(prompt("2 pairs are duplicates"), schema, 0))["new_instruction"]
    fine = json.loads(fake_answer(prompt("all good"), schema, 0))["new_instruction"]
    assert asked == f"Write samples.\n\n{UNIQUENESS_HINT}" and fine == "Write samples."


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[TreeSynthProgram, Any, Path]:
    # seed 1 as in `small`: with only a handful of leaves there are too few held-out nodes for GEPA to show a gain
    config = RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 2, "tree.width": 8,
                                         "tree.pivots": 4, "synthesis.samples": 40, "synthesis.samples_per_call": 5,
                                         "seed": 1})
    work = tmp_path_factory.mktemp("compile")
    result = compile_program([TASK], config, work / "trees", CompileOptions(modules=("criterion", "leaf"), budget=30))
    path = save_program(result.program, work / "program.json", compiled=result.report.as_dict())
    return result.program, result.report, path


def test_compile_writes_a_compile_record(compiled: tuple[TreeSynthProgram, Any, Path]) -> None:
    _, report, path = compiled
    record = read_record(path.parent / "trees" / "run.json")
    assert record.kind == "compile" and record.status == "complete" and record.report == report.as_dict()
    assert record.llm.calls > 0
    grown = [read_record(p) for p in (path.parent / "trees").glob("*/run.json")]
    assert grown and {r.kind for r in grown} == {"run"}, "each grown tree is an ordinary run"


def test_gepa_raises_the_held_out_leaf_score(compiled: tuple[TreeSynthProgram, Any, Path]) -> None:
    program, report, _ = compiled
    leaf = report.modules["leaf"]
    assert leaf.test > 0 and leaf.before is not None and leaf.after is not None
    assert leaf.after > leaf.before + 0.02, (leaf.before, leaf.after)
    assert leaf.kept and leaf.changed == ["leaf.synthesize"]
    assert report.improved() == ["leaf"]
    assert UNIQUENESS_HINT in program.leaf.synthesize.signature.instructions
    assert UNIQUENESS_HINT not in TreeSynthProgram().leaf.synthesize.signature.instructions
    criterion = report.modules["criterion"]
    assert criterion.before is not None and criterion.after == criterion.before  # nothing for the fake to learn
    assert not criterion.kept
    assert report.calls > report.grow["calls"] > 0


def test_compiled_instruction_reaches_the_prompt_of_a_run(tmp_path: Path, small: RunConfig,
                                                          compiled: tuple[TreeSynthProgram, Any, Path]) -> None:
    systems: list[str] = []

    class Spy(ScriptedEngine):
        def _respond(self, request: Any) -> Any:
            systems.append(request.system if isinstance(request.system, str) else
                           "".join(p.text for p in request.system or ()))
            return super()._respond(request)

    loaded = load_program(compiled[2])
    result = TreeSynth(small, lms=scripted_lms(Spy()), program=loaded).run(TASK, tmp_path / "run")
    assert result.status == "complete"
    leaf_calls = sum(row["calls"] for row in result.summary["llm"]["by_stage"] if row["stage"] == "leaf")
    assert sum(UNIQUENESS_HINT in s for s in systems) == leaf_calls > 0  # every leaf prompt, and only those
    fake_lms = make_role_lms(small.model)
    with_program = TreeSynth(small, lms=fake_lms, program=loaded).run(TASK, tmp_path / "compiled")
    without = TreeSynth(small, lms=fake_lms).run(TASK, tmp_path / "plain")
    assert without.summary["counts"]["duplicates_removed"] > 0
    assert with_program.summary["counts"]["duplicates_removed"] == 0  # the fake obeys the compiled instruction


def test_program_file_round_trips_and_refuses_mismatches(tmp_path: Path,
                                                         compiled: tuple[TreeSynthProgram, Any, Path]) -> None:
    path = compiled[2]
    document = json.loads(path.read_text())
    assert document["signature_version"] and document["compiled"]["modules"]["leaf"]["after"] is not None
    assert load_program(path).leaf.synthesize.signature.instructions == \
        compiled[0].leaf.synthesize.signature.instructions

    def write(name: str, change: Callable[[dict[str, Any]], None]) -> Path:
        doc = json.loads(path.read_text())
        change(doc)
        target = tmp_path / name
        target.write_text(json.dumps(doc))
        return target

    old = write("old.json", lambda d: d.update(signature_version="0"))
    with pytest.raises(ProgramMismatchError, match="signature version 0"):
        load_program(old)
    fields = write("fields.json", lambda d: d["predictors"]["leaf.synthesize"].update(inputs=["task"]))
    with pytest.raises(ProgramMismatchError, match=r"leaf\.synthesize"):
        load_program(fields)
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    with pytest.raises(ProgramMismatchError, match="not a treesynth program"):
        load_program(foreign)
    with pytest.raises(ConfigError, match="does not exist"):
        load_program(tmp_path / "missing.json")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, "-m", "treesynth", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_cli_compile_then_run_with_the_program(tmp_path: Path) -> None:
    program = tmp_path / "program.json"
    done = cli("compile", TASK.description, "--model", "test/fake", "--depth", "2", "--width", "8", "--pivots", "4",
               "-n", "40", "--samples-per-call", "5", "--module", "leaf", "--budget", "30", "--seed", "1",
               "--out", str(program))
    assert done.returncode == 0, done.stderr
    assert "leaf" in done.stdout and "compiled (leaf.synthesize)" in done.stdout
    run = cli("run", TASK.description, "--model", "test/fake", "-n", "40", "--program", str(program), "--out",
              str(tmp_path / "run"), "-q")
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["counts"]["duplicates_removed"] == 0
    bad = tmp_path / "bad.json"
    bad.write_text(program.read_text().replace('"signature_version": "', '"signature_version": "x'))
    refused = cli("run", TASK.description, "--model", "test/fake", "--program", str(bad), "--out",
                  str(tmp_path / "r2"), "-q")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "recompile it with `treesynth compile`" in refused.stderr
    assert not (tmp_path / "r2").exists()


def test_a_failing_provider_during_compile_trips_the_breaker_and_stops(tmp_path: Path, small: RunConfig) -> None:
    # One gateway serves every call of a compile, so consecutive failures add up across calls: with 2
    # attempts per call and a breaker at 3, the second measuring call trips it and compile stops with the
    # resume hint (with a gateway per call, each call would fail alone and compile would go on scoring 0s).
    engine = ScriptedEngine()
    lms = scripted_lms(engine)
    config = small.with_overrides({"model.attempts": 2, "model.failure_limit": 3})
    options = CompileOptions(modules=("leaf",), budget=30, threads=1)
    run_sync(lambda: agrow([TASK], config, tmp_path, lms=lms))  # the trees exist; compile resumes them
    grown_calls = engine.calls
    run_sync(lambda: agrow([TASK], config, tmp_path, lms=lms))
    assert engine.calls == grown_calls  # resuming complete trees makes no call

    def down(prompt: str, schema: Any, seed: int | None) -> str:
        raise LMServerError("503 Service Unavailable")

    engine.answer = down
    with pytest.raises(ProviderError, match=r"3 consecutive attempts .*re-run the same command to resume"):
        compile_program([TASK], config, tmp_path, options, lms=lms)
    assert engine.calls - grown_calls == 3
