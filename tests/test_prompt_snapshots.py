"""Snapshots of every signature's prompt, exactly as the LM receives it: the prompts are the product.

Each production module is called once with a fixed, realistic input on an LM whose engine records the
request (system text, messages, ``response_format``), under the run's own DSPy settings
(:func:`~treesynth.providers.context.lm_context`, i.e. treesynth's adapter). The rendering is compared with
``tests/snapshots/<name>.txt``, so any change to an instruction, a field description, the adapter or an
output shape shows up as a reviewed diff of those files.

After a deliberate prompt change, regenerate the snapshots and review ``git diff tests/snapshots``::

    TREESYNTH_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_prompt_snapshots.py

The comparison is hand-written (a unified diff on failure) rather than a snapshot plugin such as syrupy:
it is a few lines, and the files stay plain text that reads like the prompt itself.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dspy
import pytest
from support import ScriptedEngine

import treesynth.signatures as signatures
from treesynth.balance.routing import SampleRouter
from treesynth.baselines.methods import EVOL_OPERATIONS, Evolver, PersonaWriter
from treesynth.providers.context import lm_context
from treesynth.signatures import NONE_FITS
from treesynth.synthesis.leaf import LeafSynthesizer
from treesynth.testing.fake_lm import AsyncFakeEngine, fake_answer
from treesynth.tree.modules import CriterionDeterminer, PivotGenerator, SubspaceCoverer

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TREESYNTH_UPDATE_SNAPSHOTS") == "1"
REGENERATE = "TREESYNTH_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_prompt_snapshots.py"

TASK = "GSM8K-style grade-school math word problems"
SUBSPACE = ["operation: addition", "setting: grocery store"]
SAMPLES = [
    "Maya buys 3 bags of apples with 6 apples in each bag. How many apples does she buy in all?",
    "A shop sells 125 loaves of bread in the morning and 87 in the afternoon. How many loaves does it sell?",
    "Leo has $4.50 and finds $2.75 more in his coat. How much money does he have now?",
]
PROPOSAL = {"criterion": "number range", "values": ["single digits", "hundreds", "decimals"]}
"""The scripted criterion proposal, so the labelling prompt does not depend on the fake model's vocabulary."""
CALL = {"config": {"seed": 7}}

Case = Callable[[dspy.LM], Awaitable[Any]]
CASES: dict[str, tuple[tuple[str, ...], Case]] = {
    # name -> (the snapshot of each request the module sends, in order; how to call the module)
    "pivots": (("generate_pivots",), lambda lm: PivotGenerator().acall(
        task=TASK, subspace=SUBSPACE[:1], count=3, lm=lm, **CALL)),
    "criterion": (("determine_criterion", "classify_pivots"), lambda lm: CriterionDeterminer().acall(
        task=TASK, subspace=SUBSPACE[:1], pivots=SAMPLES, excluded_criteria=["operation"], max_groups=4, lm=lm,
        **CALL)),
    "coverage": (("cover_subspace",), lambda lm: SubspaceCoverer().acall(
        task=TASK, subspace=SUBSPACE[:1], criterion="setting", known_values=["grocery store", "farm"], max_new=4,
        lm=lm, **CALL)),
    "leaf": (("synthesize_leaf",), lambda lm: LeafSynthesizer().acall(
        task=TASK, subspace=SUBSPACE, avoid=SAMPLES[:2], count=4, lm=lm, **CALL)),
    "leaf_fields": (("synthesize_leaf_fields",), lambda lm: LeafSynthesizer().acall(
        task=TASK, subspace=SUBSPACE, avoid=[], count=2,
        fields=(("question", "the word problem"), ("answer", "the final numeric answer")), lm=lm, **CALL)),
    "routing": (("route_samples",), lambda lm: SampleRouter().acall(
        task=TASK, subspace=SUBSPACE[:1], criterion="setting", options=["grocery store", "bakery", NONE_FITS],
        samples=SAMPLES, lm=lm, **CALL)),
    "evolve": (("evolve_sample",), lambda lm: Evolver().acall(
        task=TASK, sample=SAMPLES[0], operation=EVOL_OPERATIONS[0], count=2, lm=lm, **CALL)),
    "personas": (("generate_personas",), lambda lm: PersonaWriter().acall(
        task=TASK, avoid=["A retired bus driver who volunteers as a math tutor for his grandchildren."], count=3,
        lm=lm, **CALL)),
}
SIGNATURE_OF = {"generate_pivots": "GeneratePivots", "determine_criterion": "DetermineCriterion",
                "classify_pivots": "ClassifyPivots", "cover_subspace": "CoverSubspace",
                "synthesize_leaf": "SynthesizeLeaf", "synthesize_leaf_fields": "SynthesizeLeaf",
                "route_samples": "RouteSamples", "evolve_sample": "EvolveSample",
                "generate_personas": "GeneratePersonas"}


class RecordingEngine(ScriptedEngine):
    """The fake model (criterion proposals scripted) keeping every request it is sent."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.requests: list[Any] = []

    @staticmethod
    def _answer(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        if "proposal" in (schema or {}).get("properties", {}):
            return json.dumps({"proposal": PROPOSAL})
        return fake_answer(prompt, schema, seed)

    def _respond(self, request: Any) -> Any:
        self.requests.append(request)
        return super()._respond(request)


def render(name: str, request: Any) -> str:
    """One request as plain text: a header, then each message and the response format under a banner."""
    system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
    parts = [f"# Prompt snapshot {name!r} (signature {SIGNATURE_OF[name]}): the exact request the LM receives.",
             f"# Regenerate after a deliberate change: {REGENERATE}", "", "===== system =====", system]
    for message in request.messages:
        parts += ["", f"===== {message.role} =====", message.text or ""]
    response_format = json.dumps(request.config.response_format, indent=2, ensure_ascii=False)
    parts += ["", "===== response_format =====", response_format]
    return "\n".join(parts) + "\n"


def recorded(case: str) -> dict[str, str]:
    """Snapshot name -> rendering, for every request the case's module sends."""
    names, call = CASES[case]
    engine = RecordingEngine()
    lm = dspy.LM("test/fake", engine=engine, async_engine=AsyncFakeEngine(engine), cache=False, temperature=1.0,
                 max_tokens=512)
    with lm_context():
        asyncio.run(call(lm))
    assert len(engine.requests) == len(names), f"{case} sent {len(engine.requests)} requests, expected {names}"
    return {name: render(name, request) for name, request in zip(names, engine.requests, strict=True)}


def assert_matches_snapshot(name: str, actual: str) -> None:
    """Compare with ``snapshots/<name>.txt`` (or write it when updating); fail with a unified diff."""
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path.name}; create it with: {REGENERATE}", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                    fromfile=f"snapshots/{path.name}", tofile="rendered now")
        pytest.fail(f"the prompt of {name!r} changed; if deliberate, run {REGENERATE} and review the diff:\n"
                    + "".join(diff), pytrace=False)


@pytest.mark.parametrize("case", list(CASES))
def test_rendered_prompt_matches_its_snapshot(case: str) -> None:
    for name, text in recorded(case).items():
        assert_matches_snapshot(name, text)


def test_every_signature_has_a_snapshot_and_every_snapshot_a_case() -> None:
    defined = {name for name in signatures.__all__
               if inspect.isclass(obj := getattr(signatures, name)) and issubclass(obj, dspy.Signature)}
    assert set(SIGNATURE_OF.values()) == defined
    expected = {name for names, _ in CASES.values() for name in names}
    assert expected == set(SIGNATURE_OF)
    if not UPDATE:
        assert {path.stem for path in SNAPSHOTS.glob("*.txt")} == expected, "stale or missing snapshot files"


def test_a_changed_prompt_fails_with_a_readable_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "SNAPSHOTS", tmp_path)
    monkeypatch.setattr(module, "UPDATE", False)
    (tmp_path / "generate_pivots.txt").write_text(recorded("pivots")["generate_pivots"], encoding="utf-8")
    assert_matches_snapshot("generate_pivots", recorded("pivots")["generate_pivots"])  # unchanged: passes
    changed = recorded("pivots")["generate_pivots"].replace("never a number", "sometimes a number")
    with pytest.raises(pytest.fail.Exception) as failure:
        assert_matches_snapshot("generate_pivots", changed)
    message = str(failure.value)
    assert "-problem: the whole problem text), never a number" in message
    assert "+problem: the whole problem text), sometimes a number" in message
    assert REGENERATE in message
