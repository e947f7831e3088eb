"""The memoizing adapter sends exactly what DSPy's JSONAdapter sends."""

from __future__ import annotations

import dspy

from treesynth.providers import make_lm
from treesynth.providers.adapter import MemoJSONAdapter
from treesynth.signatures import (
    DetermineCriterion,
    GeneratePivots,
    SynthesizeLeaf,
    sample_batch_type,
    shaped,
    split_type,
)


def test_prompts_and_schemas_are_identical_to_json_adapter() -> None:
    lm = make_lm("test/fake", temperature=1.0, max_tokens=64)
    cases = [
        (shaped(GeneratePivots, "pivots", sample_batch_type(3)), {"task": "t", "subspace": ["a: b"]}),
        (shaped(DetermineCriterion, "split", split_type(4)),
         {"task": "t", "subspace": [], "pivots": ["x", "y"], "excluded_criteria": ["z"]}),
        (shaped(SynthesizeLeaf, "samples", sample_batch_type(2, (("q", "question"),))),
         {"task": "t", "subspace": ["a: b"], "avoid": ["old"]}),
    ]
    memo, plain = MemoJSONAdapter(), dspy.JSONAdapter()
    for signature, inputs in cases:
        for _ in range(2):  # the second round is served from the caches
            assert memo.format(signature, demos=[], inputs=inputs) == plain.format(signature, demos=[], inputs=inputs)
            memo_kwargs: dict = {}
            plain_kwargs: dict = {}
            memo._prepare_response_format(lm, memo_kwargs, signature)
            plain._prepare_response_format(lm, plain_kwargs, signature)
            # DSPy builds a fresh pydantic model class per call; what matters is the schema it sends
            schema = memo_kwargs["response_format"].model_json_schema()
            assert schema == plain_kwargs["response_format"].model_json_schema()
            assert schema["properties"]  # a real, non-empty schema
