"""Balance an existing dataset: task -> tree (pivots from the data) -> routing -> targets -> top-up -> output.

:class:`Balancer` builds a TreeSynth tree whose pivots at each node are the dataset's own samples routed
there (generated pivots only fill in where a subspace holds too few), routes every sample top-down to
one leaf in batches, keeps at most the target per leaf (seeded downsampling), and tops sparse leaves up
with leaf synthesis that is shown the leaf's existing samples. Every input line is accounted for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from pydantic import ValidationError

from treesynth.aio import first_exception, gather_or_cancel, run_sync
from treesynth.balance.dataset import InputDataset, load_input
from treesynth.balance.export import BalanceOutcome, BalanceResult, export_balance
from treesynth.balance.routing import Router, SampleRouter
from treesynth.balance.targets import BalanceTarget, choose_kept
from treesynth.config import Role, RunConfig
from treesynth.errors import ConfigError, first_validation_error
from treesynth.kernel import RunSession
from treesynth.models import Node, PathSpec, PathStep, Task, Tree, normalize, stable_hash, stable_seed
from treesynth.program import TreeSynthProgram
from treesynth.store import RunStore
from treesynth.synthesis.allocate import LeafPlanner
from treesynth.synthesis.filler import Leaf, LeafFiller, SynthesisSource
from treesynth.tree.builder import TreeBuilder, child_step, leaf_paths


@dataclass(frozen=True)
class _Input:
    """The task, the dataset and the target of a balance run."""

    task: Task
    dataset: InputDataset
    target: BalanceTarget


@dataclass
class _Placement:
    """Where routing put the dataset's items."""

    members: dict[str, list[int]] = field(default_factory=lambda: {"root": []})
    steps: dict[int, list[PathStep]] = field(default_factory=dict)
    unrouted: dict[int, tuple[str, str]] = field(default_factory=dict)

    def distribute(self, node: Node, routed: dict[int, tuple[str | None, str | None]]) -> None:
        by_value = {str(child.value): child for child in node.children if not child.infinite}
        for item, (value, reason) in routed.items():
            if value is None:
                self.unrouted[item] = (node.id, reason or "none fits")
                continue
            child = node.children[0] if node.children[0].infinite else by_value[value]
            self.members.setdefault(child.id, []).append(item)
            self.steps.setdefault(item, []).append(PathStep(criterion=node.criterion or "", value=value))


class Balancer:
    """Balance a JSONL dataset over a TreeSynth tree. See the module docstring.

    Args:
        config: Run configuration (tree shape, models, seed); ``synthesis`` sets the top-up call size.
        lms: Optional LM per role (``routing`` included); built from ``config.model`` when omitted.
        program: Optional (compiled) program; a fresh one when omitted.
        batch_size: Samples routed per LLM call.
    """

    def __init__(self, config: RunConfig | None = None, *, lms: dict[Role, dspy.LM] | None = None,
                 program: TreeSynthProgram | None = None, batch_size: int = 20) -> None:
        """Create a balancer; see the class docstring."""
        self.config = config or RunConfig()
        self.lms = lms
        self.program = program or TreeSynthProgram()
        self.router_module = SampleRouter()
        self.batch_size = batch_size

    def balance(self, data: Path, task: Task | str, out: Path, target: BalanceTarget, *,
                text_field: str | None = None, tree: Path | None = None) -> BalanceResult:
        """Sync facade over :meth:`abalance`."""
        return run_sync(lambda: self.abalance(data, task, out, target, text_field=text_field, tree=tree))

    async def abalance(self, data: Path, task: Task | str, out: Path, target: BalanceTarget, *,
                       text_field: str | None = None, tree: Path | None = None) -> BalanceResult:
        """Balance ``data`` into ``out`` (resumable); ``tree`` reuses an existing ``tree.json``."""
        dataset = load_input(data, text_field)
        base = task if isinstance(task, Task) else Task.from_arg(task)
        task = Task(description=base.description, fields={f: f for f in dataset.template_fields},
                    first_split=base.first_split)
        tree = _tree_file(tree) if tree else None
        given = _load_tree(tree, task) if tree else None
        if given is not None:
            target.check_leaves([leaf.id for leaf in given.leaves()])
        async with RunSession.open(Path(out), self._identity(task, dataset, target, tree), self.config,
                                   kind="balance", lms=self.lms) as session:
            try:
                return await self._run(session, _Input(task, dataset, target), given)
            except BaseExceptionGroup as group:  # tree building's task group: a provider stop, a spending cap
                raise first_exception(group) from None

    def _identity(self, task: Task, dataset: InputDataset, target: BalanceTarget, tree: Path | None
                  ) -> dict[str, Any]:
        return {"task": task.model_dump(mode="json"), "data": dataset.sha256, "field": dataset.selector,
                "tree": self.config.tree.model_dump(mode="json") if tree is None else stable_hash(tree.read_text()),
                "seed": self.config.seed, "target": repr(target)}

    async def _run(self, session: RunSession, given_input: _Input, given: Node | None) -> BalanceResult:
        cfg, gateway, store = self.config, session.gateway, session.store
        task, dataset, target = given_input.task, given_input.dataset, given_input.target
        texts = [r.text for r in dataset.records]
        keys = [stable_hash(r.record) for r in dataset.records]
        router = Router(session.route_caller(self.router_module, task), store, texts, cfg.seed, self.batch_size,
                        keys=keys)
        placement = _Placement(members={"root": list(range(len(texts)))})
        builder = TreeBuilder(self.program.tree_modules(), gateway, store, task, cfg.tree, cfg.seed,
                              pivot_source=lambda node, subspace: self._pivots(builder, placement, router, node,
                                                                               subspace))

        async def on_expanded(node: Node, path: tuple[PathSpec, ...]) -> None:
            items = placement.members.get(node.id, [])
            placement.distribute(node, await router.route(node, builder.subspace(node, path), items))

        if given is None:
            root = await builder.build(on_pending=lambda n, p: None, on_leaf=_no_leaf, on_expanded=on_expanded)
        else:
            root = given
            await _route_given(root, (), on_expanded)
        quotas = target.quotas(list(leaf_paths(root)))
        status = self._keep(root, placement, quotas, dataset, store, router)
        await self._top_up(task, root, quotas, session)
        return export_balance(session, BalanceOutcome(given_input.task, given_input.dataset, root, placement.members,
                                                      placement.steps, placement.unrouted, quotas, status))

    async def _pivots(self, builder: TreeBuilder, placement: _Placement, router: Router, node: Node,
                      subspace: list[str]) -> list[str] | None:
        items = sorted(placement.members.get(node.id, []), key=router.order.__getitem__)
        want = self.config.tree.pivots
        chosen = sorted(random.Random(stable_seed(self.config.seed, node.id, "pivots")).sample(
            items, min(want, len(items))), key=router.order.__getitem__)
        real = [router.texts[i] for i in chosen]
        if len(real) >= want:
            return real
        generated = await builder.generate_pivots(node, subspace, want - len(real))
        pivots = real + (generated or [])
        return pivots if len(pivots) >= 2 else None

    def _keep(self, root: Node, placement: _Placement, quotas: dict[str, int], dataset: InputDataset,
              store: RunStore, router: Router) -> dict[int, str]:
        """Choose the originals each leaf keeps and store them; return every input item's status."""
        kept: dict[str, list[int]] = {}
        status: dict[int, str] = {}
        rows = []
        for leaf in root.leaves():
            items = placement.members.get(leaf.id, [])
            kept[leaf.id] = choose_kept(items, quotas.get(leaf.id, 0), self.config.seed, leaf.id,
                                        rank=router.order.__getitem__)
            status.update(dict.fromkeys(items, "downsampled"))
            for item in kept[leaf.id]:
                record = dataset.records[item]
                sample_id = f"orig-{record.line}"
                payload: dict[str, Any] = {"id": sample_id, "leaf_id": leaf.id, "origin": "original",
                                           "line": record.line, "text": record.text,
                                           "path": [s.model_dump() for s in placement.steps.get(item, [])]}
                rows.append((sample_id, leaf.id, normalize(record.text) or sample_id, payload))
                status[item] = "kept"
        item_of_line = {record.line: item for item, record in enumerate(dataset.records)}
        for sample_id in store.add_originals(rows):
            status[item_of_line[int(sample_id.removeprefix("orig-"))]] = "duplicate"
        status.update(dict.fromkeys(placement.unrouted, "unrouted"))
        return status

    async def _top_up(self, task: Task, root: Node, quotas: dict[str, int], session: RunSession) -> None:
        store = session.store
        total = sum(quotas.values())
        planner = LeafPlanner(total=total, level_weight=1.0, max_depth=0, redistribute=False)
        paths = leaf_paths(root)
        for leaf_id in paths:
            await planner.resolve(leaf_id, float(quotas.get(leaf_id, 0)), have=store.leaf_sample_count(leaf_id),
                                  exhausted_at=store.exhausted_at(leaf_id))
        await planner.finish_tree()
        filler = LeafFiller(session.leaf_caller(SynthesisSource(self.program.leaf, task), task), store, planner, task,
                            self.config, on_progress=lambda: None)
        await gather_or_cancel(filler.fill(Leaf(leaf_id, path)) for leaf_id, path in paths.items())


async def _no_leaf(node: Node, path: tuple[PathSpec, ...]) -> None:
    return None


async def _route_given(node: Node, path: tuple[PathSpec, ...], on_expanded: Any) -> None:
    if node.is_leaf:
        return
    await on_expanded(node, path)
    await gather_or_cancel(_route_given(child, (*path, child_step(node, child)), on_expanded)
                           for child in node.children)


def _tree_file(path: Path) -> Path:
    """``--tree`` as a file: a run directory stands for its ``tree.json``."""
    if not path.is_dir():
        return path
    if not (path / "tree.json").is_file():
        raise ConfigError(f"--tree {path} is a directory without a tree.json; pass a run directory or its tree.json")
    return path / "tree.json"


def _load_tree(path: Path, task: Task) -> Node:
    try:
        tree = Tree.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--tree {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--tree {path} is not a treesynth tree.json (not UTF-8 text)") from None
    except ValidationError as exc:
        raise ConfigError(f"--tree {path} is not a treesynth tree.json ({first_validation_error(exc)}); pass "
                          "the tree.json a run wrote, unedited") from None
    if normalize(tree.task.description) != normalize(task.description):
        raise ConfigError(f"--tree {path} was built for the task {tree.task.description!r}; pass that --task or "
                          "omit --tree to build a new tree")
    seen: set[str] = set()
    for node in tree.root.walk():
        if node.id in seen:
            raise ConfigError(f"--tree {path} has two nodes with the id {node.id!r} (edited by hand?); pass the "
                              "tree.json a run wrote, unedited")
        seen.add(node.id)
        node.samples = node.quota = 0
    return tree.root


