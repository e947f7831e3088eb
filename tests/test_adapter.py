"""The adapter's prompts: instruction first, inputs numbered, answer shape sketched, no JSON schema text."""

from __future__ import annotations

import dspy
import pytest

from treesynth.providers import make_lm
from treesynth.providers.adapter import MemoJSONAdapter
from treesynth.signatures import (
    DetermineCriterion,
    GeneratePivots,
    SynthesizeLeaf,
    labels_type,
    proposal_type,
    sample_batch_type,
    shaped,
)
from treesynth.signatures.criterion import ClassifyPivots
from treesynth.testing.fake_lm import parse_inputs

CASES = [
    (shaped(GeneratePivots, "examples", sample_batch_type(3)), {"task": "t", "subspace": ["a: b"]},
     '{"examples": {"samples": [exactly 3 strings: one complete, self-contained sample'),
    (shaped(DetermineCriterion, "proposal", proposal_type(4)),
     {"subspace": [], "pivots": ["x y z", "u v w"], "excluded_criteria": ["z"]},
     '"values": [2 to 4 strings'),
    (shaped(ClassifyPivots, "classification", labels_type(("easy", "hard"), 2)),
     {"criterion": "difficulty", "values": ["easy", "hard"], "pivots": ["x", "y"]},
     '"labels": [exactly 2 values, each one of "easy" | "hard"'),
    (shaped(SynthesizeLeaf, "batch", sample_batch_type(2, (("q", "question"),))),
     {"task": "t", "subspace": ["a: b"], "avoid": []}, '"samples": [exactly 2 items like {"q": "<question>"}'),
]
SCHEMA_WORDS = ("minItems", "maxItems", "properties", "$defs", '"type"', "must adhere to the JSON schema")


@pytest.mark.parametrize(("signature", "inputs", "shape"), CASES)
def test_prompt_is_instruction_first_and_free_of_schema_words(signature: type[dspy.Signature],
                                                              inputs: dict[str, object], shape: str) -> None:
    system, user = MemoJSONAdapter().format(signature, demos=[], inputs=inputs)
    assert system["content"].startswith(signature.instructions.strip().splitlines()[0])
    assert shape in system["content"]
    for word in SCHEMA_WORDS:
        assert word not in system["content"] and word not in user["content"], word
    assert user["content"].rstrip().endswith("and nothing else.")


def test_string_lists_are_numbered_and_read_back_by_the_fake_model() -> None:
    signature = shaped(DetermineCriterion, "proposal", proposal_type(4))
    inputs = {"subspace": [], "pivots": ["first sample", "second sample"], "excluded_criteria": ["topic"]}
    user = MemoJSONAdapter().format(signature, demos=[], inputs=inputs)[1]["content"]
    assert "[[ ## pivots ## ]]\n1. first sample\n2. second sample" in user
    assert "[[ ## subspace ## ]]\n(none)" in user
    assert parse_inputs(user) == {"subspace": [], "pivots": ["first sample", "second sample"],
                                  "excluded_criteria": ["topic"]}


def test_memoized_messages_and_response_format_are_stable() -> None:
    lm = make_lm("test/fake", temperature=1.0, max_tokens=64)
    memo = MemoJSONAdapter()
    for signature, inputs, _ in CASES:
        first = memo.format(signature, demos=[], inputs=inputs)
        assert memo.format(signature, demos=[], inputs=inputs) == first  # served from the caches
        kwargs: dict = {}
        plain: dict = {}
        memo._prepare_response_format(lm, kwargs, signature)
        dspy.JSONAdapter()._prepare_response_format(lm, plain, signature)
        # the schema sent to an in-process engine is DSPy's own (the grammar is built from it)
        assert kwargs["response_format"].model_json_schema() == plain["response_format"].model_json_schema()


def test_a_memoized_response_format_is_handed_out_as_a_private_copy_each_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.config import ModelConfig
    from treesynth.providers.structured import StructuredOutputs

    monkeypatch.setenv("OPENAI_API_KEY", "not-a-secret")

    lm = make_lm("openai/fake", temperature=1.0, max_tokens=64, api_base="http://127.0.0.1:9/v1")
    memo = MemoJSONAdapter(StructuredOutputs.from_config(ModelConfig(model="openai/fake",
                                                                     api_base="http://127.0.0.1:9/v1")))
    signature = CASES[0][0]
    first: dict = {}
    memo._prepare_response_format(lm, first, signature)
    assert first["response_format"]["type"] == "json_schema"
    first["response_format"]["json_schema"]["schema"]["properties"].clear()  # a caller changes what it got
    second: dict = {}
    memo._prepare_response_format(lm, second, signature)
    assert second["response_format"]["json_schema"]["schema"]["properties"]  # the memo is untouched
    assert memo._fresh(second["response_format"]) == second["response_format"]
    odd = {"enum": ("a", "b")}  # not plain JSON (a tuple): copied by deepcopy, still equal and private
    copied = memo._fresh(odd)
    assert copied == odd and copied is not odd and memo._format_json[id(odd)] is None
