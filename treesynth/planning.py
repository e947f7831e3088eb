"""``treesynth run --dry-run``: what a run will spend before the expensive part is spent.

Tree building is the cheap part of a run (a few calls per internal node), and its outcome decides
everything else, so a plan *grows the real tree* into the run directory (the following ``run`` reuses it,
nothing is paid twice) and then projects leaf synthesis exactly from the final allocation: each leaf
needs ``ceil(missing / k)`` calls per wave until duplicates (rate ``dup_rate``) are topped up.
``analytic=True`` makes no call at all and bounds the tree by assuming every node has ``width``
children (``--dry-run --analytic``).

Waste: every leaf call asks for ``k`` (``samples_per_call``) samples, so a leaf with quota ``q`` makes
``ceil(q / k)`` calls and keeps ``q`` of their ``ceil(q / k) * k`` candidates; the rest stay in the store as
``unused_candidates``. Spread thin (many leaves, ``q`` below ``k``) that is most of what is generated:
:func:`waste_warnings` flags a plan whose expected unused candidates exceed half the samples kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from treesynth.config import Role, RunConfig
from treesynth.models import Node, Task
from treesynth.pipeline import TreeSynth
from treesynth.providers import default_model
from treesynth.providers.pricing import estimate_cost
from treesynth.summary import is_infinite_split
from treesynth.synthesis.allocate import allocate
from treesynth.wording import plural

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
    warnings: tuple[str, ...] = ()
    """Plan-time warnings (see :func:`waste_warnings`)."""

    @property
    def calls(self) -> int:
        """All LLM calls: tree building plus leaf synthesis."""
        return self.tree_calls + self.leaf_calls

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the total."""
        return {**asdict(self), "warnings": list(self.warnings), "calls": self.calls}


WASTE_SHARE = 0.5
"""Warn when the expected unused candidates exceed this share of the samples kept."""


def expected_unused(quotas: Iterable[int], per_call: int) -> int:
    """Candidates generated but not kept when each leaf makes ``ceil(q / per_call)`` calls of ``per_call``
    samples for its quota ``q`` (duplicate top-ups come on top)."""
    return sum(math.ceil(q / per_call) * per_call - q for q in quotas if q > 0)


def waste_warnings(quotas: Mapping[str, int], per_call: int, *, bound: bool = False) -> tuple[str, ...]:
    """A warning naming the fixes when the allocation spreads the samples too thin for ``per_call``.

    ``bound`` words it for an upper bound (a full tree of ``width`` children, before the tree is grown).
    """
    total, leaves = sum(quotas.values()), len(quotas)
    unused = expected_unused(quotas.values(), per_call)
    if not leaves or unused <= WASTE_SHARE * total:
        return ()
    up_to = "up to " if bound else ""
    return (f"{total} samples over {up_to}{plural(leaves, 'leaf')} is ~{total / leaves:.1f} per leaf, but each "
            f"synthesis call asks for {per_call}: expect {up_to}~{unused} unused candidates ({unused / total:.0%} of "
            f"the samples kept) paid for and discarded; lower --samples-per-call (e.g. "
            f"{max(1, math.ceil(total / leaves))}), lower --depth or --width, or raise -n",)


def infinite_split_warnings(splits: int, width: int, out: Path) -> tuple[str, ...]:
    """A warning when ``splits`` nodes' values collapsed into one infinite child instead of separate branches."""
    if not splits:
        return ()
    return (f"{plural(splits, 'split')} became a single infinite child (more values than --width {width}, or an "
            f"unbounded criterion): the values are drawn per call, not balanced as separate branches; raise "
            f"--width to split them, and see 'treesynth tree show {out}' (marked ⚠)",)


def grown_tree_quotas(out: Path, config: RunConfig) -> dict[str, int] | None:
    """The leaf quotas of the finished tree in ``out/tree.json`` if it was grown (by a ``--dry-run`` or an
    earlier session) with ``config``'s tree shape and sample count; else ``None``."""
    try:
        tree = json.loads((out / "tree.json").read_text(encoding="utf-8"))
        grown = RunConfig.model_validate(tree["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (grown.tree, grown.synthesis.samples) != (config.tree, config.synthesis.samples):
        return None
    quotas = {leaf.id: leaf.quota for leaf in Node.model_validate(tree["root"]).leaves()}
    return quotas if sum(quotas.values()) == config.synthesis.samples else None  # else: not grown to the end


def full_tree_quotas(config: RunConfig, task: Task | None = None) -> dict[str, int]:
    """The allocation over a full tree (every node ``width`` children; a predefined first split gives one
    child per value, each an equal share): the most leaves, so the thinnest spread, the tree can reach."""
    width, depth, n = config.tree.width, config.tree.depth, config.synthesis.samples
    first = task.first_split if task is not None else None
    if first is None:
        return allocate({str(i): 1.0 for i in range(width**depth)}, n)
    groups = allocate({value: 1.0 for value in first.values}, n)
    below = width ** (depth - 1)
    return {f"{value}/{i}": q for value, share in groups.items()
            for i, q in allocate({str(i): 1.0 for i in range(below)}, share).items()}


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


def analytic_plan(config: RunConfig, model: str, dup_rate: float = DEFAULT_DUP_RATE, *,
                  task: Task | None = None) -> Plan:
    """An upper bound with no LLM call: a full tree of ``width`` children per node (one per value under a
    ``task``'s predefined first split, whose root makes no call).

    Each stage is priced with its role's model (``model`` for roles without one of their own).
    """
    width, depth = config.tree.width, config.tree.depth
    quotas = full_tree_quotas(config, task)
    leaves = len(quotas)
    first = task.first_split if task is not None else None
    if first is None:
        internal = called = sum(width**d for d in range(depth))
    else:
        internal = 1 + len(first.values) * sum(width**d for d in range(depth - 1))
        called = internal - 1  # the root's split is predefined
    tree_calls = called * 3  # pivots + criterion + coverage
    leaf_calls = sum(leaf_calls_for(q, config.synthesis.samples_per_call, dup_rate) for q in quotas.values())
    stage_prompt, stage_completion = called * _LEAF_PROMPT_TOKENS, called * config.tree.pivots * _TOKENS_PER_SAMPLE
    leaf_prompt = leaf_calls * _LEAF_PROMPT_TOKENS
    leaf_completion = leaf_calls * config.synthesis.samples_per_call * _TOKENS_PER_SAMPLE
    parts: list[tuple[str, int, int]] = [(config.model.model_for(role) or model, stage_prompt, stage_completion)
                                         for role in _TREE_ROLES]
    parts.append((config.model.model_for("leaf") or model, leaf_prompt, leaf_completion))
    return Plan(internal + leaves, leaves, tree_calls, leaf_calls, 3 * stage_prompt + leaf_prompt,
                3 * stage_completion + leaf_completion, _priced(parts), analytic=True,
                warnings=waste_warnings(quotas, config.synthesis.samples_per_call, bound=True))


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
    splits = sum(1 for node in result.tree.root.walk() if is_infinite_split(node))
    warnings = infinite_split_warnings(splits, pipeline.config.tree.width, out) + waste_warnings(quotas, k)
    return Plan(nodes, len(quotas), ledger["calls"], leaf_calls, prompt, completion, cost, analytic=False,
                warnings=warnings)


def _leaf_model(pipeline: TreeSynth) -> str:
    """The model that will serve leaf synthesis: the pipeline's own leaf LM, else the leaf role's model."""
    if pipeline.lms is not None and "leaf" in pipeline.lms:
        return str(pipeline.lms["leaf"].model)
    return pipeline.config.model.model_for("leaf") or default_model()
