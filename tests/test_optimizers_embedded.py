"""Compiling on the embedded Gemma 3 270M model at tiny size (run by CI's ``pytest -m embedded`` step).

The 270M base model cannot write good instructions for itself (GEPA and MIPROv2 reflect with it and
find nothing), but it imitates demonstrations: bootstrapped demos of its own answers that pass the
coverage objective (valid, novel, and recalling the values the tree really has) raise its held-out score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import ScriptedEngine, scripted_lms

from treesynth.config import RunConfig
from treesynth.optimizers import CompileOptions, compile_program, load_program, save_program
from treesynth.pipeline import TreeSynth
from treesynth.testing.tasks import split_tasks


@pytest.mark.embedded
def test_bootstrapped_demos_raise_the_held_out_coverage_score_and_reach_the_prompt(
        tmp_path: Path) -> None:
    tasks = split_tasks()
    config = RunConfig().with_overrides({"model.model": "local/gemma-3-270m", "model.cache": False,  # every call runs
                                         "tree.depth": 1, "tree.width": 6, "synthesis.samples": 1,
                                         "synthesis.samples_per_call": 2})
    options = CompileOptions(optimizer="bootstrap", modules=("coverage",), demos=2, draws=3, threads=1)
    result = compile_program(tasks, config, tmp_path / "trees", options)

    coverage = result.report.modules["coverage"]
    assert coverage.test > 0 and coverage.before is not None and coverage.after is not None
    assert coverage.after > coverage.before, (coverage.before, coverage.after)
    assert coverage.kept and result.report.improved() == ["coverage"]
    demos = result.program.coverage.cover.demos
    assert demos and all(d["coverage"]["new_values"] for d in demos)  # the model's own passing answers

    # the compiled program file is what a run uses: its demos reach every coverage prompt
    path = save_program(result.program, tmp_path / "program.json", compiled=result.report.as_dict())
    prompts: list[str] = []

    class Spy(ScriptedEngine):
        def _respond(self, request: Any) -> Any:
            prompts.append("\n".join(m.text or "" for m in request.messages))
            return super()._respond(request)

    demo_value = demos[0]["coverage"]["new_values"][0]
    fake = RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 2, "synthesis.samples": 12})
    run = TreeSynth(fake, lms=scripted_lms(Spy()), program=load_program(path)).run(
        "Riddles for children", tmp_path / "run")
    assert run.status == "complete"
    asked = [p for p in prompts if "known_values" in p]
    assert asked and all(demo_value in p for p in asked)
