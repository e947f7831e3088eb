"""Compiling on the embedded default model (Qwen2.5-Coder-1.5B-Instruct) at tiny size, run by CI's
``pytest -m embedded`` step.

BootstrapFewShot proposes demos of the model's own answers that pass the coverage objective (valid, novel,
recalling the values the tree really has). Whether they help is the optimizer's validation call, not the
test's: the test checks that compile measures held-out nodes before and after, keeps the compiled module
exactly when validation improved, that kept demos are genuine answers, and that they reach every coverage
prompt of a run using the program file. The measured numbers are recorded in ``benchmarks/RESULTS.md``.
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
from treesynth.tree.checks import MAX_VALUE_WORDS, merge_values


@pytest.mark.embedded
def test_bootstrap_compile_on_the_default_model_measures_keeps_by_validation_and_reaches_the_prompt(
        tmp_path: Path) -> None:
    tasks = split_tasks()
    config = RunConfig().with_overrides({"model.model": "local/qwen2.5-coder-1.5b-instruct",
                                         "model.cache": False,  # every call runs
                                         "tree.depth": 1, "tree.width": 6, "synthesis.samples": 1,
                                         "synthesis.samples_per_call": 2})
    options = CompileOptions(optimizer="bootstrap", modules=("coverage",), demos=2, draws=3, threads=1)
    result = compile_program(tasks, config, tmp_path / "trees", options)

    coverage = result.report.modules["coverage"]
    print(f"coverage held-out {coverage.before} -> {coverage.after}, kept={coverage.kept}, calls={coverage.calls}")
    assert coverage.test > 0 and coverage.before is not None and coverage.after is not None
    demos = result.program.coverage.cover.demos
    if not coverage.kept:  # validation did not improve: the program is left as it was
        assert not demos and coverage.after == coverage.before and result.report.improved() == []
        return
    assert result.report.improved() == ["coverage"]
    assert demos and all(d["coverage"]["new_values"] for d in demos)  # the model's own passing answers
    for demo in demos:  # genuine values: distinct, not vague, short
        values = [str(v) for v in demo["coverage"]["new_values"]]
        assert merge_values([], values) == [v.strip() for v in values], values
        assert all(len(v.split()) <= MAX_VALUE_WORDS for v in values), values

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
