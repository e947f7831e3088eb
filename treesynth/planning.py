"""``treesynth run --dry-run``: what a run will spend before the expensive part is spent.

Tree building is the cheap part of a run (a few calls per internal node), and its outcome decides
everything else, so a plan *grows the real tree* into the run directory (the following ``run`` reuses it,
nothing is paid twice) and then projects leaf synthesis exactly from the final allocation: each leaf
needs ``ceil(missing / k)`` calls per wave until duplicates (rate ``dup_rate``) are topped up.
``analytic=True`` makes no call at all and bounds the tree by assuming every node has ``width``
children (``--dry-run --analytic``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from treesynth.config import Role, RunConfig
from treesynth.models import Task
from treesynth.pipeline import TreeSynth
from treesynth.providers import default_model
from treesynth.providers.pricing import estimate_cost
from treesynth.synthesis.allocate import allocate

DEFAULT_DUP_RATE = 0.1
_LEAF_PROMPT_TOKENS = 450  # typical JSONAdapter leaf prompt without an 'avoid' list
_TOKENS_PER_SAMPLE = 40
_TREE_ROLES: tuple[Role, ...] = ("pivots", "criterion", "coverage")


@dataclass(frozen=True)
class Plan:
    """Expected size and spend of a run."""

    nodes: int
    leaves: int
    tree_calls: int
    leaf_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    analytic: bool

    @property
    def calls(self) -> int:
        """All LLM calls: tree building plus leaf synthesis."""
        return self.tree_calls + self.leaf_calls

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the total."""
        return {**asdict(self), "calls": self.calls}


def leaf_calls_for(quota: int, per_call: int, dup_rate: float) -> int:
    """Calls a leaf needs for ``quota`` samples in waves of ``ceil(missing / per_call)`` calls."""
    calls, missing = 0, float(quota)
    for _ in range(50):  # waves; bounded even for absurd duplicate rates
        if missing < 0.5:
            break
        wave = math.ceil(missing / per_call)
        calls += wave
        missing -= wave * per_call * (1 - dup_rate)
    return calls


def _priced(parts: list[tuple[str, int, int]]) -> float | None:
    """Total cost of ``(model, prompt tokens, completion tokens)`` parts; ``None`` if any price is unknown."""
    total: float | None = 0.0
    for model, prompt, completion in parts:
        cost = estimate_cost(model, prompt, completion)
        total = None if total is None or cost is None else total + cost
    return total


def analytic_plan(config: RunConfig, model: str, dup_rate: float = DEFAULT_DUP_RATE) -> Plan:
    """An upper bound with no LLM call: a full tree of ``width`` children per node.

    Each stage is priced with its role's model (``model`` for roles without one of their own).
    """
    width, depth = config.tree.width, config.tree.depth
    internal = sum(width**d for d in range(depth))
    leaves = width**depth
    tree_calls = internal * 3  # pivots + criterion + coverage
    quotas = allocate({str(i): 1.0 for i in range(leaves)}, config.synthesis.samples)
    leaf_calls = sum(leaf_calls_for(q, config.synthesis.samples_per_call, dup_rate) for q in quotas.values())
    stage_prompt, stage_completion = internal * _LEAF_PROMPT_TOKENS, internal * config.tree.pivots * _TOKENS_PER_SAMPLE
    leaf_prompt = leaf_calls * _LEAF_PROMPT_TOKENS
    leaf_completion = leaf_calls * config.synthesis.samples_per_call * _TOKENS_PER_SAMPLE
    parts: list[tuple[str, int, int]] = [(config.model.model_for(role) or model, stage_prompt, stage_completion)
                                         for role in _TREE_ROLES]
    parts.append((config.model.model_for("leaf") or model, leaf_prompt, leaf_completion))
    return Plan(internal + leaves, leaves, tree_calls, leaf_calls, 3 * stage_prompt + leaf_prompt,
                3 * stage_completion + leaf_completion, _priced(parts), analytic=True)


async def aplan(pipeline: TreeSynth, task: Task, out: Path, dup_rate: float = DEFAULT_DUP_RATE) -> Plan:
    """Grow the tree into ``out`` (reused by a later run there) and project leaf synthesis exactly."""
    result = await pipeline.arun(task, out, tree_only=True)
    ledger = result.summary["llm"]
    k = pipeline.config.synthesis.samples_per_call
    quotas: dict[str, int] = result.summary["allocation"]["quota"]
    held = {leaf.id: leaf.samples for leaf in result.tree.root.leaves()}  # a resumed or extended run keeps these
    leaf_calls = sum(leaf_calls_for(max(0, q - held.get(leaf, 0)), k, dup_rate) for leaf, q in quotas.items())
    tree_rows = [r for r in ledger["by_stage"] if r["stage"] != "leaf"]
    pivot_rows = [r for r in tree_rows if r["stage"] == "pivots"]
    per_sample = (sum(r["completion_tokens"] for r in pivot_rows)
                  / max(1, sum(r["calls"] for r in pivot_rows) * pipeline.config.tree.pivots)) or _TOKENS_PER_SAMPLE
    per_prompt = (sum(r["prompt_tokens"] for r in pivot_rows) / max(1, sum(r["calls"] for r in pivot_rows))
                  ) or _LEAF_PROMPT_TOKENS
    leaf_prompt, leaf_completion = round(leaf_calls * per_prompt * 1.3), round(leaf_calls * k * per_sample)
    prompt = sum(r["prompt_tokens"] for r in tree_rows) + leaf_prompt
    completion = sum(r["completion_tokens"] for r in tree_rows) + leaf_completion
    parts = [(r["model"], r["prompt_tokens"], r["completion_tokens"]) for r in tree_rows]
    cost = _priced([*parts, (_leaf_model(pipeline), leaf_prompt, leaf_completion)])
    nodes = sum(1 for _ in result.tree.root.walk())
    return Plan(nodes, len(quotas), ledger["calls"], leaf_calls, prompt, completion, cost, analytic=False)


def _leaf_model(pipeline: TreeSynth) -> str:
    """The model that will serve leaf synthesis: the pipeline's own leaf LM, else the leaf role's model."""
    if pipeline.lms is not None and "leaf" in pipeline.lms:
        return str(pipeline.lms["leaf"].model)
    return pipeline.config.model.model_for("leaf") or default_model()
