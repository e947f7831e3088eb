"""One leaf-synthesis call, as a serializable work item and the code that makes it.

:class:`LeafCall` is all a call needs besides the run's fixed settings: its :class:`~treesynth.models.LeafWork`
(leaf, path, call index, seed) and the samples it is shown to avoid. :class:`SourceCaller` makes the call
through a gateway and turns the answer into gated candidates; it is what a local run uses in the driver and
what each Ray worker runs. The store write stays with the caller of a caller (the driver's
:class:`~treesynth.synthesis.filler.LeafFiller`), keyed by ``(leaf_id, call_index)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from treesynth.gate import SampleGate
from treesynth.models import LeafWork, Task, fields_text, normalize, stable_hash
from treesynth.providers.gateway import Gateway
from treesynth.store import Candidate
from treesynth.synthesis.leaf import LeafSynthesizer


class SampleSource(Protocol):
    """Makes one call's worth of samples for a work item (the leaf synthesizer, or a baseline method)."""

    async def __call__(self, work: LeafWork, subspace: list[str], avoid: list[str], lm: Any,
                       config: dict[str, Any]) -> Any:
        """Return a prediction whose ``samples`` is a list of strings (or field dicts)."""
        ...


@dataclass(frozen=True)
class SynthesisSource:
    """The default source: TreeSynth leaf synthesis conditioned on the leaf's path."""

    module: LeafSynthesizer
    task: Task

    async def __call__(self, work: LeafWork, subspace: list[str], avoid: list[str], lm: Any,
                       config: dict[str, Any]) -> Any:
        """One call of the leaf synthesizer."""
        return await self.module.acall(task=self.task.description, subspace=subspace, avoid=avoid,
                                       count=work.count, fields=tuple(self.task.fields.items()), lm=lm,
                                       config=config)


@dataclass(frozen=True)
class LeafCall:
    """One synthesis call to make: its work item and the samples (content) it is shown to avoid."""

    work: LeafWork
    avoid: tuple[str, ...] = ()


class LeafCaller(Protocol):
    """Makes leaf calls: candidates (gated) for a call, or ``None`` when it failed or did not parse."""

    stage: str
    """The stage its calls are booked under in the ledger."""

    async def __call__(self, call: LeafCall) -> list[Candidate] | None:
        """Make ``call``; raises :class:`~treesynth.errors.ProviderError` when the run must stop."""
        ...


class SourceCaller:
    """Makes leaf calls in this process: ``source`` through ``gateway``, candidates through the sample gate."""

    def __init__(self, source: SampleSource, gateway: Gateway, task: Task, stage: str = "leaf") -> None:
        """Wire a caller; ``stage`` names its calls in the ledger."""
        self.source = source
        self.gateway = gateway
        self.stage = stage
        self._fields = tuple(task.fields.items())
        self.gate = SampleGate(task=task.description, fields=tuple(task.fields))

    async def __call__(self, call: LeafCall) -> list[Candidate] | None:
        """One call of the source; ``None`` when it failed or its output did not parse."""
        work = call.work
        path = work.concrete_path()
        subspace = [f"{step.criterion}: {step.value}" for step in path]
        avoid = list(call.avoid)

        async def run(lm: Any, config: dict[str, Any]) -> Any:
            return await self.source(work, subspace, avoid, lm, config)

        pred = await self.gateway.call("leaf", stage=self.stage, node_id=work.leaf_id, seed=work.seed, fn=run)
        if pred is None:
            return None
        path_json = [step.model_dump() for step in path]
        made = (self._candidate(work, i, item, path_json) for i, item in enumerate(pred.samples))
        return [self._judge(norm, sample, subspace) for norm, sample in made]

    def _judge(self, norm: str, sample: dict[str, Any], subspace: list[str]) -> Candidate:
        """The candidate with the gate's verdict; a rejected one also records the stage that made it."""
        reason = self.gate.check(sample["fields"] if "fields" in sample else sample["text"], subspace)
        if reason is None and not norm:  # nothing left after normalization (the gate rejects that anyway)
            reason = "is empty"
        return norm, sample if reason is None else {**sample, "stage": self.stage}, reason

    def _candidate(self, work: LeafWork, position: int, item: Any, path: list[dict[str, str]]
                   ) -> tuple[str, dict[str, Any]]:
        sample: dict[str, Any] = {"id": stable_hash(work.leaf_id, work.call_index, position, length=16),
                                  "leaf_id": work.leaf_id, "path": path}
        if self._fields:
            sample["fields"] = {name: str(item.get(name, "")).strip() for name, _ in self._fields}
        else:
            sample["text"] = str(item).strip()
        return normalize(content(sample) if "text" in sample else " ".join(sample["fields"].values())), sample


def content(sample: dict[str, Any]) -> str:
    """A sample's text, or its fields as one text."""
    if "text" in sample:
        return str(sample["text"])
    return fields_text(sample["fields"])
