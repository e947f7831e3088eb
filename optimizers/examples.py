"""Node example sets: grow small trees on tasks, then turn their nodes into DSPy examples per module.

Every example is one tree node; its inputs are exactly what the pipeline passes the module at that node
(plus a fixed ``seed``), and its labels are references the objectives compare against (never inputs):

* ``criterion`` -- nodes with pivots: ``task, subspace, pivots, excluded_criteria, max_groups``;
* ``coverage`` -- nodes with a criterion (the task's predefined first split too):
  ``task, subspace, criterion, known_values, max_new`` with the first half of the node's values known and
  the rest as the ``held_out`` label, also given as the module's own output (``coverage``), so labeled
  few-shot demos can show the real completion;
* ``leaf`` -- leaves: ``task, subspace, avoid, count, fields`` with labels ``references`` (samples of
  sibling leaves), ``own_value`` and ``sibling_values`` (the values of the leaf's last step).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dspy

from treesynth.config import Role, RunConfig
from treesynth.models import Node, PathSpec, PathStep, Sample, Task, Tree, stable_hash, stable_seed
from treesynth.pipeline import TreeSynth
from treesynth.program import TreeSynthProgram
from treesynth.signatures.coverage import Coverage
from treesynth.tree.builder import child_step

INPUTS: dict[str, tuple[str, ...]] = {
    "criterion": ("task", "subspace", "pivots", "excluded_criteria", "max_groups"),
    "coverage": ("task", "subspace", "criterion", "known_values", "max_new"),
    "leaf": ("task", "subspace", "avoid", "count", "fields"),
}
"""Each module's inputs, as named by its ``aforward`` (examples add ``seed`` and ``node_id``)."""
MAX_REFERENCES = 24


@dataclass(frozen=True)
class GrownTree:
    """A tree grown (and filled with a few samples) for one task, with the config that grew it."""

    task: Task
    tree: Tree
    samples: list[Sample]
    config: RunConfig
    calls: int = 0
    tokens: int = 0


@dataclass
class NodeSets:
    """Node examples per module."""

    by_module: dict[str, list[dspy.Example]] = field(default_factory=lambda: defaultdict(list))

    def __getitem__(self, module: str) -> list[dspy.Example]:
        """The examples of ``module`` (empty when there are none)."""
        return self.by_module.get(module, [])

    def extend(self, other: NodeSets) -> None:
        """Add every example of ``other``."""
        for module, examples in other.by_module.items():
            self.by_module.setdefault(module, []).extend(examples)


@dataclass(frozen=True)
class Splits:
    """Train (optimizer), val (optimizer's selection) and test (held out, reported) node examples."""

    train: list[dspy.Example]
    val: list[dspy.Example]
    test: list[dspy.Example]


async def agrow(tasks: Sequence[Task], config: RunConfig, work: Path, *, lms: dict[Role, dspy.LM] | None = None,
                program: TreeSynthProgram | None = None) -> list[GrownTree]:
    """Grow (or resume) one small run per task under ``work`` and read back its tree and samples."""
    async def grow(task: Task) -> GrownTree:
        out = work / f"tree-{stable_hash(task.model_dump(mode='json'), config.model_dump(mode='json'), length=10)}"
        result = await TreeSynth(config, lms=lms, program=program).arun(task, out)
        llm = result.summary.get("llm", {})
        tokens = int(llm.get("prompt_tokens", 0)) + int(llm.get("completion_tokens", 0))
        return GrownTree(task, result.tree, list(result.samples()), config, int(llm.get("calls", 0)), tokens)

    return list(await asyncio.gather(*(grow(task) for task in tasks)))


def _child_values(node: Node) -> list[str]:
    if len(node.children) == 1 and node.children[0].infinite:
        return [str(v) for v in node.children[0].value or ()]
    return [str(child.value) for child in node.children]


def _walk(root: Node) -> Iterator[tuple[Node, Node | None, tuple[PathSpec, ...]]]:
    """Every node with its parent and its root-to-node path."""
    stack: list[tuple[Node, Node | None, tuple[PathSpec, ...]]] = [(root, None, ())]
    while stack:
        node, parent, path = stack.pop()
        yield node, parent, path
        for child in reversed(node.children):
            stack.append((child, node, (*path, child_step(node, child))))


def _drawn(path: tuple[PathSpec, ...], *prefix: object) -> list[PathStep]:
    """The path with infinite steps drawn as the tree builder does (``stable_seed(*prefix, i)``)."""
    return [step.draw(stable_seed(*prefix, i)) for i, step in enumerate(path)]


def _lines(steps: list[PathStep]) -> list[str]:
    return [f"{step.criterion}: {step.value}" for step in steps]


class _Extractor:
    """Builds the examples of one grown tree."""

    def __init__(self, grown: GrownTree, draws: int) -> None:
        self.grown = grown
        self.draws = draws
        self.seed = grown.config.seed
        self.task = grown.task.description
        self.by_leaf: dict[str, list[str]] = defaultdict(list)
        for sample in grown.samples:
            self.by_leaf[sample.leaf_id].append(sample.content())

    def examples(self) -> NodeSets:
        sets = NodeSets()
        for node, parent, path in _walk(self.grown.tree.root):
            ancestors = [step.criterion for step in path]
            if len(node.pivots) >= 2:
                sets.by_module["criterion"] += self._criterion(node, path, ancestors)
            if node.criterion and node.children:  # a task's predefined first split is the best reference
                sets.by_module["coverage"] += self._coverage(node, path)
            if node.is_leaf:
                sets.by_module["leaf"] += self._leaf(node, parent, path)
        return sets

    def _example(self, module: str, node: Node, draw: int, **values: object) -> dspy.Example:
        """An example; its ``group`` (the unit of splitting) is the node's concrete subspace."""
        seed = stable_seed(self.seed, node.id, "compile", module, draw)
        group = stable_hash(self.grown.task.fingerprint, node.id, values.get("subspace"))
        example = dspy.Example(task=self.task, seed=seed, node_id=node.id, group=group, **values)
        return example.with_inputs(*INPUTS[module], "seed", "node_id")

    def _criterion(self, node: Node, path: tuple[PathSpec, ...], ancestors: list[str]) -> list[dspy.Example]:
        width = self.grown.config.tree.width
        subspace = _lines(_drawn(path, self.seed, node.id))
        return [self._example("criterion", node, d, subspace=subspace, pivots=list(node.pivots),
                              excluded_criteria=ancestors, max_groups=min(len(node.pivots), width * 2))
                for d in range(self.draws)]

    def _coverage(self, node: Node, path: tuple[PathSpec, ...]) -> list[dspy.Example]:
        values = _child_values(node)
        cut = max(2, math.ceil(len(values) / 2)) if len(values) > 2 else len(values)
        subspace = _lines(_drawn(path, self.seed, node.id))
        label = Coverage(new_values=values[cut:], unbounded=any(child.infinite for child in node.children))
        return [self._example("coverage", node, d, subspace=subspace, criterion=node.criterion,
                              known_values=values[:cut], max_new=self.grown.config.tree.pool_size,
                              held_out=values[cut:], coverage=label)
                for d in range(self.draws)]

    def _leaf(self, node: Node, parent: Node | None, path: tuple[PathSpec, ...]) -> list[dspy.Example]:
        synthesis = self.grown.config.synthesis
        own_samples = self.by_leaf.get(node.id, [])
        siblings = [c for c in parent.children if c.id != node.id] if parent is not None else []
        references = [s for c in siblings for s in self.by_leaf.get(c.id, [])][:MAX_REFERENCES]
        avoid = own_samples[: synthesis.avoid_examples]
        out: list[dspy.Example] = []
        for d in range(self.draws):
            steps = _drawn(path, self.seed, node.id, "compile", d)
            own = steps[-1].value if steps else ""
            sibling_values = [v for v in _child_values(parent) if v != own] if parent is not None else []
            out.append(self._example("leaf", node, d, subspace=_lines(steps), avoid=avoid,
                                     count=synthesis.samples_per_call, fields=tuple(self.grown.task.fields.items()),
                                     references=references or own_samples[:MAX_REFERENCES], own_value=own,
                                     sibling_values=sibling_values))
        return out


def node_examples(grown: Sequence[GrownTree], *, draws: int = 1) -> NodeSets:
    """Examples of every module from every grown tree; ``draws`` examples (seeds) per node."""
    sets = NodeSets()
    for tree in grown:
        sets.extend(_Extractor(tree, draws).examples())
    return sets


def split_examples(examples: Sequence[dspy.Example], *, seed: int,
                   fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)) -> Splits:
    """Split into train/val/test by subspace (draws of one subspace land in the same part), seeded.

    Nodes are shuffled and each goes to the part furthest below its share; with at least three nodes
    every part gets one.
    """
    groups: dict[str, list[dspy.Example]] = defaultdict(list)
    for example in examples:
        groups[str(example.group)].append(example)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    parts: list[list[dspy.Example]] = [[], [], []]
    nodes = [0, 0, 0]
    total = sum(fractions)
    for index, key in enumerate(order):
        if index < 3 and len(order) >= 3:
            target = (0, 2, 1)[index]  # train, test, val first: every part gets a node
        else:
            target = max(range(3), key=lambda p: fractions[p] / total * (index + 1) - nodes[p])
        parts[target].extend(groups[key])
        nodes[target] += 1
    return Splits(train=parts[0], val=parts[1], test=parts[2])
