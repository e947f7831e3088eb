"""The leaf-synthesis DSPy module: ``count`` new samples for one root-to-leaf path."""

from __future__ import annotations

from typing import Any

import dspy

from treesynth.signatures import SynthesizeLeaf, sample_batch_type, shaped


class LeafSynthesizer(dspy.Module):
    """Synthesizes samples inside one atomic subspace. Owns its predictor once (compilable)."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.synthesize = dspy.Predict(SynthesizeLeaf)

    async def aforward(self, task: str, subspace: list[str], avoid: list[str], count: int,
                       fields: tuple[tuple[str, str], ...] = (), **call: Any) -> dspy.Prediction:
        """Return ``Prediction(samples=[...])``: strings, or field dicts when ``fields`` are given."""
        signature = shaped(self.synthesize.signature, "batch", sample_batch_type(count, fields))
        pred = await self.synthesize.acall(signature=signature, task=task, subspace=subspace, avoid=avoid, **call)
        items = [item.model_dump() if fields else str(item) for item in pred.batch.samples]
        return dspy.Prediction(samples=items)
