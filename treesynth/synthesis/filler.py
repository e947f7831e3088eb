"""Leaf workers: fill each leaf up to its quota with keyed, resumable synthesis calls."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from treesynth.config import RunConfig, SynthesisConfig
from treesynth.models import LeafWork, PathSpec, Task, stable_seed
from treesynth.neardup import NearDupIndex, NearDupScreen
from treesynth.store import RunStore
from treesynth.synthesis.allocate import LeafPlanner, call_budget
from treesynth.synthesis.caller import LeafCall, LeafCaller, SampleSource, SourceCaller, SynthesisSource, content

__all__ = ["Leaf", "LeafFiller", "SampleSource", "SourceCaller", "SynthesisSource"]


@dataclass(frozen=True)
class Leaf:
    """A final leaf handed from tree building to synthesis."""

    leaf_id: str
    path: tuple[PathSpec, ...]


class LeafFiller:
    """Runs one worker per leaf; each worker loops until the planner settles.

    A worker first accepts stored candidates (so resumed runs reuse finished calls), then issues as many
    concurrent calls as the missing samples need (``ceil(missing / k)``), each keyed by
    ``(leaf_id, call_index)`` with its own seed, and stops at its call budget. Every candidate passes
    the sample gate first; rejected ones are stored with their reason and never accepted, so the
    missing samples are simply topped up by further calls. Near-duplicates of accepted samples (any leaf)
    are rejected at acceptance (:class:`~treesynth.neardup.NearDupScreen`) and topped up the same way; the
    screen's index is built from the store's accepted samples when the first leaf fills (so a resumed run,
    or a balance run's kept originals, are in it).
    """

    def __init__(self, caller: LeafCaller, store: RunStore, planner: LeafPlanner, task: Task, config: RunConfig,
                 on_progress: Callable[[], None]) -> None:
        """Wire a filler; see the class docstring. It uses ``config``'s synthesis settings and seed; ``caller``
        makes the calls (in this process, or on the run's executor) and names them in the ledger."""
        self.caller = caller
        self.stage = caller.stage
        self.store = store
        self.planner = planner
        self.task = task
        self.config: SynthesisConfig = config.synthesis
        self.seed = config.seed
        self._on_progress = on_progress
        self._screen: NearDupScreen | None = None

    def screen(self) -> NearDupScreen | None:
        """The run's near-duplicate screen (``None`` when turned off), built from the accepted samples once."""
        jaccard, cosine = self.config.near_dup or None, self.config.near_dup_embedding
        if self._screen is None and (jaccard or cosine):
            embed = None
            if cosine is not None:
                from treesynth.metrics.embedders import minilm_embedder

                embed = minilm_embedder().embed
            index = NearDupIndex(jaccard, embed=embed, embedding_threshold=cosine)
            self._screen = NearDupScreen(index, self.stage).admit_all(self.store.samples_in_order())
        return self._screen

    async def fill(self, leaf: Leaf) -> None:
        """Fill ``leaf`` until the plan is settled or the leaf is exhausted.

        Calls go out in rounds: as many concurrent calls as the missing samples need, all shown the same
        ``avoid`` samples. A round's candidates are accepted together, in call order, once its last call is
        back, so which samples a leaf keeps never depends on which call happened to finish first (the same
        seed gives the same dataset). A resumed leaf replays its rounds by call index: stored calls are not
        made again, and a round is accepted only with all its calls back, each shown the same ``avoid`` as
        uninterrupted, so a resumed run gives the same dataset as an uninterrupted one.
        """
        done = self.store.leaf_call_indexes(leaf.leaf_id)
        calls_made = 0  # the next call index: every call before it is stored or in flight
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                if in_flight:  # the round's calls: the first provider error stops the run at once (the rest are
                    await asyncio.gather(*in_flight)  # cancelled below); one callback per call, where waiting for
                    in_flight = set()  # the first completed again and again cost O(calls²) per round
                target = self.planner.quota(leaf.leaf_id)
                have = self.store.accept(leaf.leaf_id, target, self.screen(), below=calls_made)
                await self.planner.report(leaf.leaf_id, have)
                self._on_progress()
                if have >= target:
                    if await self.planner.wait_for_work(leaf.leaf_id, have):
                        continue
                    return
                budget = call_budget(target, self.config.samples_per_call, self.config.call_budget_factor)
                if calls_made >= budget:  # still short, and the budget is spent
                    self.store.mark_exhausted(leaf.leaf_id, have)
                    await self.planner.exhaust(leaf.leaf_id, have)
                    return
                recent = self.store.recent_samples(leaf.leaf_id, self.config.avoid_examples, below=calls_made)
                avoid = tuple(content(s) for s in recent)
                for _ in range(min(math.ceil((target - have) / self.config.samples_per_call), budget - calls_made)):
                    if calls_made not in done:
                        call = asyncio.ensure_future(self._call(leaf, calls_made, avoid))
                        call.add_done_callback(_retrieve)  # a call that fails after the run stopped is not logged
                        in_flight.add(call)
                    calls_made += 1
        finally:
            for task in in_flight:
                task.cancel()

    def work_item(self, leaf: Leaf, call_index: int) -> LeafWork:
        """The serializable description of one synthesis call."""
        return LeafWork(leaf_id=leaf.leaf_id, path=leaf.path, call_index=call_index,
                        count=self.config.samples_per_call,
                        seed=stable_seed(self.seed, leaf.leaf_id, call_index))

    async def _call(self, leaf: Leaf, call_index: int, avoid: tuple[str, ...]) -> None:
        candidates = await self.caller(LeafCall(self.work_item(leaf, call_index), avoid))
        self.store.save_leaf_call(leaf.leaf_id, call_index, candidates)  # keyed: a second save of a key is ignored


def _retrieve(task: asyncio.Future[None]) -> None:
    """Mark a finished call's error as seen (the fill re-raises the first; asyncio would log the others)."""
    if not task.cancelled():
        task.exception()
