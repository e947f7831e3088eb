"""task -> tree building -> leaf allocation -> leaf synthesis -> dataset -> metrics.

:class:`TreeSynth` is the public entry point. Its async core, :meth:`TreeSynth.arun`, reads in the order
of that sentence; :meth:`TreeSynth.run` is the thin sync facade. It is the one place that enters
``dspy.context`` (JSONAdapter, usage tracking); LMs are passed explicitly to every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from treesynth.aio import run_sync, spawn
from treesynth.config import Role, RunConfig
from treesynth.errors import RESUME_HINT, ConfigError, ProviderError
from treesynth.io import iter_jsonl
from treesynth.kernel import RunSession
from treesynth.models import Node, PathSpec, Sample, Task, Tree
from treesynth.program import TreeSynthProgram
from treesynth.providers import CallRecord
from treesynth.providers.pricing import live_cost
from treesynth.record import Reused, RunKind, RunRecord, RunStatus
from treesynth.redact import redact
from treesynth.store import RunStore, write_atomic, write_jsonl_atomic
from treesynth.summary import priced_ledger, run_counts, run_status
from treesynth.synthesis.allocate import LeafPlanner
from treesynth.synthesis.filler import Leaf, LeafFiller, SynthesisSource
from treesynth.tree.builder import TreeBuilder


@dataclass
class Progress:
    """Live counters handed to the progress callback."""

    target: int
    """Samples the run must deliver."""
    nodes: int = 0
    """Nodes finished so far (expanded or final leaves)."""
    leaves: int = 0
    """Leaves final so far."""
    tree_done: bool = False
    """Tree building has finished."""
    samples: int = 0
    """Samples accepted so far."""
    calls: int = 0
    """LLM calls so far (failed ones included)."""
    failed_calls: int = 0
    """LLM calls that failed after every retry."""
    tokens: int = 0
    """Prompt plus completion tokens so far."""
    cost_usd: float | None = 0.0
    """Estimated cost so far; ``None`` once a model's prices are unknown."""
    reused: Reused | None = None
    """A resumed run: what earlier sessions left (the counters above include it)."""


@dataclass
class RunResult:
    """What a run produced: the tree, the ``run.json`` summary, and the samples (read lazily)."""

    out: Path
    tree: Tree
    summary: dict[str, Any] = field(default_factory=dict)
    """``run.json`` as a mapping (a tree-only run: status ``tree``, the ledger and the allocation)."""
    record: RunRecord | None = None
    """``run.json`` as a typed record (``None`` for a tree-only run, which writes no ``run.json``)."""

    @property
    def status(self) -> str:
        """``complete``, ``partial``, ``failed`` or ``interrupted``."""
        return str(self.summary["status"])

    def samples(self) -> Iterator[Sample]:
        """Stream the samples from ``samples.jsonl``."""
        for _, record in iter_jsonl(self.out / "samples.jsonl", allow_empty=True):
            yield Sample.model_validate(record)


@dataclass
class _Run:
    """Everything one run wires together."""

    task: Task
    session: RunSession
    planner: LeafPlanner
    builder: TreeBuilder
    filler: LeafFiller
    progress: Progress
    infinite_weight: float

    def weight(self, path: tuple[PathSpec, ...]) -> float:
        """Allocation weight of a leaf: ``infinite_weight`` per infinite step on its path."""
        return float(self.infinite_weight ** sum(1 for step in path if step.value is None))

    def group(self, path: tuple[PathSpec, ...]) -> str:
        """Allocation group of a node: its predefined first-split value (each gets an equal share), else ``""``."""
        if self.task.first_split is None or not path or path[0].value is None:
            return ""
        return path[0].value

    @property
    def store(self) -> RunStore:
        """The run's store."""
        return self.session.store


class TreeSynth:
    """Synthesize a diverse dataset for a task by tree-guided subspace partitioning.

    Args:
        config: Run configuration (tree shape, synthesis, models, concurrency, seed).
        lms: Optional LM per role; built from ``config.model`` when omitted.
        program: Optional (compiled) :class:`TreeSynthProgram`; a fresh one when omitted.
        on_progress: Optional callback receiving :class:`Progress` after every step.
        kind: What ``run.json`` calls the run (``tune-trial`` for a tune's trials).
    """

    def __init__(self, config: RunConfig | None = None, *, lms: dict[Role, dspy.LM] | None = None,
                 program: TreeSynthProgram | None = None, on_progress: Callable[[Progress], None] | None = None,
                 kind: RunKind = "run") -> None:
        """Create a pipeline; see the class docstring."""
        self.config = config or RunConfig()
        self.lms = lms
        self.program = program or TreeSynthProgram()
        self.on_progress = on_progress or (lambda _progress: None)
        self.kind: RunKind = kind

    def run(self, task: Task | str, out: Path | str) -> RunResult:
        """Sync facade over :meth:`arun` (also works inside a running event loop, e.g. in Jupyter)."""
        return run_sync(lambda: self.arun(task, out))

    async def arun(self, task: Task | str, out: Path | str, *, tree_only: bool = False) -> RunResult:
        """Run (or resume) the pipeline for ``task`` in the run directory ``out``.

        With ``tree_only`` the run stops after tree building (``tree.json`` only); a later full run in the
        same directory reuses the tree.
        """
        task = task if isinstance(task, Task) else Task.from_arg(task)
        progress = Progress(target=self.config.synthesis.samples)
        async with RunSession.open(Path(out), self._identity(task), self.config, kind=self.kind, lms=self.lms,
                                   on_call=lambda rec: self._ledger(progress, rec)) as session:
            _check_target(session, progress.target)
            _seed_progress(progress, session)
            run = self._wire(task, session, progress)
            self.on_progress(progress)  # the run directory and the models are accepted: nothing spent yet
            try:
                error = await self._grow_and_fill(run, fill=not tree_only)   # tree building + leaf synthesis
                return self._export(run, error, samples=not tree_only)      # dataset + metrics
            except (Exception, KeyboardInterrupt, asyncio.CancelledError) as exc:  # Ctrl-C: export what exists
                if not tree_only and not isinstance(exc, ConfigError):
                    _export_failure(run, exc)
                raise

    def _identity(self, task: Task) -> dict[str, Any]:
        """What must match to resume: not the samples target (a larger ``-n`` extends a run)."""
        cfg = self.config
        return {"task": task.model_dump(mode="json"), "tree": cfg.tree.model_dump(mode="json"), "seed": cfg.seed,
                "samples_per_call": cfg.synthesis.samples_per_call, "infinite_weight": cfg.synthesis.infinite_weight}

    def _wire(self, task: Task, session: RunSession, progress: Progress) -> _Run:
        cfg, gateway, store = self.config, session.gateway, session.store
        infinite_weight = cfg.synthesis.infinite_weight or float(cfg.tree.width)
        planner = LeafPlanner(total=cfg.synthesis.samples, max_depth=cfg.tree.depth,         # leaf allocation
                              level_weight=max(float(cfg.tree.width), infinite_weight))
        builder = TreeBuilder(self.program.tree_modules(), gateway, store, task, cfg.tree, cfg.seed)
        filler = LeafFiller(session.leaf_caller(SynthesisSource(self.program.leaf, task), task), store, planner,
                            task, cfg, on_progress=lambda: self._count_samples(planner, progress))
        return _Run(task, session, planner, builder, filler, progress, infinite_weight)

    async def _grow_and_fill(self, run: _Run, *, fill: bool) -> str | None:
        """Grow the tree; every leaf starts filling as soon as it is final. Returns a stop reason or None."""
        planner, progress = run.planner, run.progress

        def on_pending(node: Node, path: tuple[PathSpec, ...]) -> None:
            planner.add_pending(node.id, node.depth, run.weight(path), run.group(path))

        async def on_expanded(node: Node, path: tuple[PathSpec, ...]) -> None:
            progress.nodes += 1
            self.on_progress(progress)
            await planner.resolve(node.id)

        stop: list[str] = []
        try:
            async with asyncio.TaskGroup() as fills:
                async def on_leaf(node: Node, path: tuple[PathSpec, ...]) -> None:
                    progress.nodes += 1
                    progress.leaves += 1
                    await planner.resolve(node.id, run.weight(path), have=run.store.leaf_sample_count(node.id),
                                          exhausted_at=run.store.exhausted_at(node.id))
                    if fill:
                        spawn(fills, run.filler.fill(Leaf(node.id, path)))

                await run.builder.build(on_pending=on_pending, on_leaf=on_leaf, on_expanded=on_expanded)
                progress.tree_done = True
                await planner.finish_tree()
        except* ProviderError as group:
            stop.append(str(_first_error(group)))
        return stop[0] if stop else None

    def _ledger(self, progress: Progress, rec: CallRecord) -> None:
        progress.calls += 1
        progress.failed_calls += 0 if rec.ok else 1
        progress.tokens += rec.prompt_tokens + rec.completion_tokens
        cost = live_cost(rec.model, rec.prompt_tokens, rec.completion_tokens)
        progress.cost_usd = None if cost is None or progress.cost_usd is None else progress.cost_usd + cost
        self.on_progress(progress)

    def _count_samples(self, planner: LeafPlanner, progress: Progress) -> None:
        """Samples held now: the registered leaves' live counts plus what earlier sessions left in the others."""
        earlier = progress.reused.samples - sum(planner.kept.values()) if progress.reused is not None else 0
        progress.samples = earlier + sum(planner.have.values())
        self.on_progress(progress)

    def _export(self, run: _Run, error: str | None, *, samples: bool) -> RunResult:
        quotas = run.planner.quotas()
        if samples:
            return export_run(run.session, run.builder.root, run.task, quotas, error, pending=_unexpanded(run))
        tree = _tree_with_counts(run.store, run.builder.root, run.task, self.config, quotas)
        return RunResult(out=run.store.out, tree=tree, summary={"status": "tree", "error": error,
                                                                "llm": run.store.ledger(),
                                                                "allocation": {"quota": quotas}})


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf exception of a (nested) exception group, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _unexpanded(run: _Run) -> frozenset[str]:
    """Childless nodes of the tree that were never expanded (building stopped before them)."""
    return frozenset(leaf.id for leaf in run.builder.root.leaves() if run.store.get_node(leaf.id) is None)


def _check_target(session: RunSession, target: int) -> None:
    """Refuse a samples target below what the run already holds (it would drop samples)."""
    held = session.store.sample_total()
    if target < held:
        raise ConfigError(f"--out {session.store.out} holds {held} samples already, more than -n {target}; use -n "
                          f"{held} or more (a larger -n extends the run), or another --out")


def _seed_progress(progress: Progress, session: RunSession) -> None:
    """Start the live counters where the earlier sessions left them (so live and final counts agree)."""
    progress.reused = session.reused
    if session.reused is None:
        return
    ledger = priced_ledger(session.store)
    progress.calls, progress.failed_calls, progress.cost_usd = ledger["calls"], ledger["failed"], ledger["cost_usd"]
    progress.tokens = ledger["prompt_tokens"] + ledger["completion_tokens"]
    progress.samples = session.reused.samples


def _export_failure(run: _Run, exc: BaseException) -> None:
    """Best effort: write the exports with ``run.json`` status ``failed`` (``interrupted`` on Ctrl-C).

    The store keeps all work for resume; ``samples.jsonl`` holds the samples accepted so far.
    """
    first = _first_error(exc)
    interrupted = isinstance(first, (KeyboardInterrupt, asyncio.CancelledError))
    error = ("interrupted" if interrupted else f"unexpected {type(first).__name__}: {redact(str(first))[:300]}") + \
        f"; {RESUME_HINT}"
    try:
        export_run(run.session, run.builder.root, run.task, run.planner.quotas(), error,
                   stopped="interrupted" if interrupted else "failed", pending=_unexpanded(run))
    except Exception:  # the original error matters more than a failed export
        return


def _tree_with_counts(store: RunStore, root: Node, task: Task, config: RunConfig, quotas: dict[str, int]) -> Tree:
    counts = store.sample_counts()
    for leaf in root.leaves():
        leaf.samples = counts.get(leaf.id, 0)
        leaf.quota = quotas.get(leaf.id, 0)
    tree = Tree(task=task, config=config.model_dump(mode="json"), root=root)
    write_atomic(store.out / "tree.json", tree.model_dump_json(indent=2))
    return tree


def export_run(session: RunSession, root: Node, task: Task, quotas: dict[str, int], error: str | None, *,
               stopped: RunStatus | None = None, pending: frozenset[str] = frozenset(),
               method: str | None = None) -> RunResult:
    """Write ``tree.json``, ``samples.jsonl``, ``rejected.jsonl`` and ``run.json`` (atomically); return the result.

    ``stopped`` is the status of a run that ended early (``failed``: an unexpected error; ``interrupted``:
    Ctrl-C); ``pending`` names nodes never expanded, which are not counted as leaves; ``method`` names a baseline.
    """
    store, target = session.store, session.config.synthesis.samples
    tree = _tree_with_counts(store, root, task, session.config, quotas)
    n_samples = write_jsonl_atomic(store.out / "samples.jsonl", store.samples())
    write_jsonl_atomic(store.out / "rejected.jsonl", store.rejected())
    record = session.record(status=run_status(error=error, n_samples=n_samples, target=target, stopped=stopped),
                            counts=run_counts(tree=tree, store=store, n_samples=n_samples, target=target,
                                              pending=pending),
                            task=task, error=error, method=method, allocation={"quota": quotas})
    return RunResult(out=store.out, tree=tree, summary=session.write_record(record), record=record)
