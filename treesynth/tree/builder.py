"""Tree building: expand nodes concurrently, with no level barrier, into a data-space partitioning tree.

Each node runs pivots -> criterion (checked, bounded retries) -> coverage, stores the outcome under its
id, and spawns its children at once; finished leaves are handed to ``on_leaf`` immediately so leaf
synthesis can start while other branches still grow. A resumed run reads stored outcomes instead of
calling the LLM again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from treesynth.aio import spawn
from treesynth.config import TreeConfig
from treesynth.gate import SampleGate
from treesynth.models import Node, PathSpec, Task, stable_hash, stable_seed
from treesynth.providers.gateway import Gateway
from treesynth.store import RunStore
from treesynth.tree.checks import merge_values, split_problems
from treesynth.tree.modules import CriterionDeterminer, PivotGenerator, SubspaceCoverer

COVERAGE_ROUNDS = 3
"""Most coverage calls per node (extra rounds only refill an infinite node's value pool)."""
MIN_PIVOTS = 2
"""Fewest generated pivots that must pass the sample gate (fewer when fewer were asked for); else the
node stays a leaf."""


@dataclass(frozen=True)
class TreeModules:
    """The three DSPy modules of tree building."""

    pivots: PivotGenerator
    criterion: CriterionDeterminer
    coverage: SubspaceCoverer


def child_id(parent_id: str, criterion: str, value: str | None) -> str:
    """Stable id of a child: a hash of its parent, the criterion and the value (``*`` for infinite)."""
    return stable_hash(parent_id, criterion, value if value is not None else "*")


def child_step(parent: Node, child: Node) -> PathSpec:
    """The path step from ``parent`` to ``child``: a fixed value, or the value pool of an infinite child."""
    if child.infinite:
        return PathSpec(criterion=parent.criterion or "", pool=tuple(str(v) for v in child.value or ()))
    return PathSpec(criterion=parent.criterion or "", value=str(child.value))


def leaf_paths(root: Node) -> dict[str, tuple[PathSpec, ...]]:
    """Every leaf's id and its root-to-leaf path, in pre-order."""
    found: dict[str, tuple[PathSpec, ...]] = {}

    def walk(node: Node, path: tuple[PathSpec, ...]) -> None:
        if node.is_leaf:
            found[node.id] = path
        for child in node.children:
            walk(child, (*path, child_step(node, child)))

    walk(root, ())
    return found


LeafCallback = Callable[[Node, tuple[PathSpec, ...]], Awaitable[None]]
PivotSource = Callable[[Node, list[str]], Awaitable[list[str] | None]]
"""Supplies a node's pivots from its subspace description; ``None`` when none could be had."""
PendingCallback = Callable[[Node, tuple[PathSpec, ...]], None]
ExpandedCallback = Callable[[Node, tuple[PathSpec, ...]], Awaitable[None]]


class TreeBuilder:
    """Builds the tree for ``task`` under ``config`` through ``gateway``, persisting into ``store``."""

    def __init__(self, modules: TreeModules, gateway: Gateway, store: RunStore, task: Task, config: TreeConfig,
                 seed: int, *, pivot_source: PivotSource | None = None) -> None:
        """Wire a builder; ``pivot_source`` replaces LLM pivot generation (e.g. real samples when balancing)."""
        self.modules = modules
        self.pivot_source = pivot_source or self.generate_pivots
        self.gateway = gateway
        self.store = store
        self.task = task
        self.config = config
        self.seed = seed
        self.root = Node(id="root", depth=0)
        self.gate = SampleGate(task=task.description, fields=tuple(task.fields))
        self._gated: dict[str, tuple[list[dict[str, str]], str | None]] = {}
        """Per node being expanded: the pivots the gate rejected, and why the node cannot split on them."""

    async def build(self, *, on_pending: PendingCallback, on_leaf: LeafCallback,
                    on_expanded: ExpandedCallback) -> Node:
        """Grow the whole tree and return its root.

        ``on_pending`` sees every node before it is expanded, ``on_expanded`` every internal node after,
        and ``on_leaf`` every leaf as soon as it is final (with its path). :attr:`root` holds the tree
        grown so far, also when building stops early.
        """
        on_pending(self.root, ())
        async with asyncio.TaskGroup() as group:
            self._spawn(group, self.root, (), on_pending, on_leaf, on_expanded)
        return self.root

    def _spawn(self, group: asyncio.TaskGroup, node: Node, path: tuple[PathSpec, ...], on_pending: PendingCallback,
               on_leaf: LeafCallback, on_expanded: ExpandedCallback) -> None:
        async def expand() -> None:
            outcome = self.store.get_node(node.id)
            if outcome is None:
                outcome = self._with_gate(node.id, await self._decide(node, path))
                self.store.put_node(node.id, outcome)
            self._apply(node, outcome)
            if node.is_leaf:
                await on_leaf(node, path)
                return
            child_paths = self._child_paths(node, path)
            for child, child_path in zip(node.children, child_paths, strict=True):
                on_pending(child, child_path)
            await on_expanded(node, path)
            for child, child_path in zip(node.children, child_paths, strict=True):
                self._spawn(group, child, child_path, on_pending, on_leaf, on_expanded)

        spawn(group, expand())  # not once a sibling has failed and the group is shutting down

    @staticmethod
    def _child_paths(node: Node, path: tuple[PathSpec, ...]) -> list[tuple[PathSpec, ...]]:
        return [(*path, child_step(node, child)) for child in node.children]

    def _apply(self, node: Node, outcome: dict[str, Any]) -> None:
        node.pivots = list(outcome.get("pivots", []))
        node.leaf_reason = outcome.get("leaf_reason")
        if node.leaf_reason is not None:
            return
        node.criterion = outcome["criterion"]
        values: list[str] = outcome["values"]
        if outcome["infinite"]:
            node.children = [Node(id=child_id(node.id, node.criterion or "", None), depth=node.depth + 1,
                                  value=values, parent_criterion=node.criterion, infinite=True)]
        else:
            node.children = [Node(id=child_id(node.id, node.criterion or "", v), depth=node.depth + 1, value=v,
                                  parent_criterion=node.criterion) for v in values]

    async def _decide(self, node: Node, path: tuple[PathSpec, ...]) -> dict[str, Any]:
        """One node's expansion outcome (``leaf_reason`` set when it stays a leaf)."""
        if node.depth >= self.config.depth:
            return {"leaf_reason": "max depth"}
        first = self.task.first_split
        if node.depth == 0 and first is not None:
            # predefined values are always separate children, whatever the width (as the paper's reference code)
            values = merge_values([], first.values)
            return {"criterion": first.criterion, "values": values, "infinite": False, "predefined": True}
        subspace = self.subspace(node, path)
        pivots = await self.pivot_source(node, subspace)
        if pivots is None:
            return {"leaf_reason": "pivot answer did not parse"}
        split, attempts, last = await self._split(node, subspace, pivots, [step.criterion for step in path])
        if split is None:
            return {"pivots": pivots, "leaf_reason": f"no valid split after {attempts} attempts: {last}"}
        values, unbounded = await self._cover(node, subspace, split[0], split[1])
        infinite = unbounded or len(values) > self.config.width
        return {"pivots": pivots, "criterion": split[0], "values": values[: self.config.pool_size] if infinite
                else values, "infinite": infinite, "split_attempts": attempts}

    def subspace(self, node: Node, path: tuple[PathSpec, ...]) -> list[str]:
        """The node's constraints as ``criterion: value`` lines (infinite steps drawn with the node's seed)."""
        drawn = (step.draw(stable_seed(self.seed, node.id, i)) for i, step in enumerate(path))
        return [f"{step.criterion}: {step.value}" for step in drawn]

    async def generate_pivots(self, node: Node, subspace: list[str], count: int | None = None) -> list[str] | None:
        """``count`` (default: the configured number) LLM-generated pivots for ``node`` that pass the sample gate.

        ``None`` when the answer did not parse or fewer than :data:`MIN_PIVOTS` pivots pass; the rejected
        ones are kept in the node's stored outcome under ``rejected_pivots``.
        """
        wanted = count or self.config.pivots

        async def run(lm: Any, config: dict[str, Any]) -> Any:
            return await self.modules.pivots.acall(task=self.task.description, subspace=subspace,
                                                   count=wanted, lm=lm, config=config)

        pred = await self.gateway.call("pivots", stage="pivots", node_id=node.id,
                                       seed=stable_seed(self.seed, node.id, "pivots"), fn=run, required=True)
        if pred is None:
            return None
        pivots = list(pred.pivots)
        kept: list[str] = []
        rejected: list[dict[str, str]] = []
        for pivot in pivots:
            reason = self.gate.check(str(pivot), subspace)
            if reason is None:
                kept.append(pivot)
            else:
                rejected.append({"text": str(pivot), "reason": reason})
        failure = None
        if len(kept) < min(MIN_PIVOTS, wanted):
            why = ", ".join(f"{reason} ({n})" for reason, n in Counter(r["reason"] for r in rejected).most_common())
            failure = f"pivots failed the sample gate: {len(kept)} of {len(pivots)} passed; rejected: {why or 'none'}"
        if rejected:
            self._gated[node.id] = (rejected, failure)
        return None if failure is not None else kept

    def _with_gate(self, node_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
        """``outcome`` with the node's gate-rejected pivots, and the gate's reason if it left the node a leaf."""
        rejected, failure = self._gated.pop(node_id, ([], None))
        if not rejected:
            return outcome
        outcome = {**outcome, "rejected_pivots": rejected}
        if failure is not None and "pivots" not in outcome and outcome.get("leaf_reason"):
            outcome["leaf_reason"] = failure
        return outcome

    async def _split(self, node: Node, subspace: list[str], pivots: list[str], ancestors: list[str]
                     ) -> tuple[tuple[str, list[str]] | None, int, str]:
        last = "no answer"
        for attempt in range(self.config.split_attempts):
            async def run(lm: Any, config: dict[str, Any]) -> Any:
                return await self.modules.criterion.acall(
                    task=self.task.description, subspace=subspace, pivots=pivots, excluded_criteria=ancestors,
                    max_groups=min(len(pivots), self.config.width * 2), lm=lm, config=config)

            pred = await self.gateway.call("criterion", stage="criterion", node_id=node.id,
                                           seed=stable_seed(self.seed, node.id, "criterion", attempt), fn=run,
                                           required=True)
            if pred is None:
                last = "unparseable answer"
                continue
            problems = split_problems(pred.split, pivot_count=len(pivots), ancestors=ancestors,
                                      task=self.task.description)
            if not problems:
                values = merge_values([], [g.value for g in pred.split.groups], task=self.task.description)
                return (pred.split.criterion.strip(), values), attempt + 1, ""
            last = "; ".join(problems)
        return None, self.config.split_attempts, last

    async def _cover(self, node: Node, subspace: list[str], criterion: str, values: list[str]
                     ) -> tuple[list[str], bool]:
        """Complete the value list. The first round may add up to one value more than the width allows, so the
        model can show the criterion exceeds it (an infinite child) without being invited to list dozens;
        later rounds only refill an infinite node's value pool."""
        unbounded = False
        for round_index in range(COVERAGE_ROUNDS):
            infinite = unbounded or len(values) > self.config.width
            room = (self.config.pool_size if infinite else self.config.width + 1) - len(values)
            if room <= 0 or (round_index > 0 and not infinite):
                break
            known = values

            async def run(lm: Any, config: dict[str, Any], known: list[str] = known, room: int = room) -> Any:
                return await self.modules.coverage.acall(
                    task=self.task.description, subspace=subspace, criterion=criterion, known_values=known,
                    max_new=room, lm=lm, config=config)

            pred = await self.gateway.call("coverage", stage="coverage", node_id=node.id,
                                           seed=stable_seed(self.seed, node.id, "coverage", round_index), fn=run,
                                           required=True)
            if pred is None:
                break
            values = merge_values(values, pred.coverage.new_values, task=self.task.description)
            unbounded = unbounded or pred.coverage.unbounded
            if len(values) == len(known):
                break
        return values, unbounded
