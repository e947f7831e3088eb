"""Batched routing of existing samples to a node's children, checked id by id.

Each call classifies up to ``batch_size`` samples. A reply must return every sample number exactly once
with one of the node's options; numbers that are missing, duplicated or invented are routed again in a
later round (a bounded number of rounds), never silently dropped. Batches are chunks of the pending samples
sorted by a stable hash of their content (never by file position), and each call's seed hashes the batch's
texts, so batch membership, positions within a batch and seeds -- hence the outcome per sample -- do not
depend on the input order.
"""

from __future__ import annotations

from collections import Counter

from treesynth.aio import gather_or_cancel
from treesynth.models import Node, stable_hash, stable_seed
from treesynth.signatures import NONE_FITS
from treesynth.store import RunStore
from treesynth.tree.routing import RouteCall, RouteCaller, SampleRouter

ROUTING_ROUNDS = 3
RETRY = "retry"  # a batch's answer for an item that goes to the next round
Routed = dict[int, tuple[str | None, str | None]]
"""item -> (value taken, or None when unrouted; reason when unrouted)."""

__all__ = ["RETRY", "ROUTING_ROUNDS", "Routed", "Router", "SampleRouter", "check_assignments", "content_order"]


def check_assignments(numbers: list[int], answer: list[tuple[int, str]], options: list[str]
                      ) -> tuple[dict[int, str], list[int]]:
    """Split a reply into valid assignments and the batch numbers to route again.

    A number is valid when it was asked for, appears exactly once and takes a known option.
    """
    counts = Counter(n for n, _ in answer)
    asked = set(numbers)
    valid = {n: v for n, v in answer if n in asked and counts[n] == 1 and v in options}
    return valid, [n for n in numbers if n not in valid]


def content_order(texts: list[str], keys: list[str] | None = None) -> list[int]:
    """Rank of every item when sorted by a stable hash of its text (then its key, then the text itself).

    Items whose text and key are equal are interchangeable, so only their order among themselves (which
    cannot change any per-content outcome) follows the input position.
    """
    tie = keys or [""] * len(texts)
    ranked = sorted(range(len(texts)), key=lambda i: (stable_hash(texts[i]), tie[i], texts[i]))
    order = [0] * len(texts)
    for rank, item in enumerate(ranked):
        order[item] = rank
    return order


class Router:
    """Routes items (dataset line indexes) at a node to its children, persisting every outcome."""

    def __init__(self, caller: RouteCaller, store: RunStore, texts: list[str], seed: int, batch_size: int = 20,
                 keys: list[str] | None = None) -> None:
        """Wire a router over ``texts`` (indexed by item); ``caller`` makes its batches' calls (the run's executor's).

        ``keys`` (one per item, e.g. a hash of the whole record) break ties between items with equal texts;
        they must depend on content only, never on file position.
        """
        self.caller = caller
        self.store = store
        self.texts = texts
        self.order = content_order(texts, keys)
        self.seed = seed
        self.batch_size = batch_size
        self.routing_calls = 0

    async def route(self, node: Node, subspace: list[str], items: list[int]) -> Routed:
        """Route ``items`` at ``node`` (internal) to a child value, ``None`` for none-fits or failure.

        Each batch's answers are stored as it comes back (under ``<node id>#<round>``; the node's own routes
        once every round is over), so a killed balance resumes without asking a finished batch again: its
        batches and seeds are the uninterrupted ones.
        """
        done = self.store.routes(node.id)
        if any(i not in done for i in items):
            options, routed = self._options(node), Routed()
            pending = sorted(items, key=self.order.__getitem__)
            for round_index in range(ROUTING_ROUNDS):
                key = f"{node.id}#{round_index}"
                marks = self.store.routes(key)
                batches = [pending[i:i + self.batch_size] for i in range(0, len(pending), self.batch_size)]
                await gather_or_cancel(self._batch(node, subspace, options, b, round_index)
                                       for b in batches if b[0] not in marks)
                marks = self.store.routes(key)
                routed.update({i: marks[i] for i in pending if marks[i][1] != RETRY})
                pending = [i for i in pending if marks[i][1] == RETRY]
                if not pending:
                    break
            routed.update(dict.fromkeys(pending, (None, "routing failed")))
            self.store.save_routes(node.id, routed)
            done = self.store.routes(node.id)
        return {i: done[i] for i in items}

    @staticmethod
    def _options(node: Node) -> list[str]:
        if node.children and node.children[0].infinite:
            values = [str(v) for v in node.children[0].value or []]
        else:
            values = [str(child.value) for child in node.children]
        return [*values, NONE_FITS]

    async def _batch(self, node: Node, subspace: list[str], options: list[str], items: list[int],
                     round_index: int) -> None:
        numbers = list(range(1, len(items) + 1))
        samples = [self.texts[i] for i in items]
        seed = stable_seed(self.seed, node.id, "route", stable_hash(samples), round_index)
        self.routing_calls += 1
        answer = await self.caller(RouteCall(node_id=node.id, criterion=node.criterion or "", options=tuple(options),
                                             subspace=tuple(subspace), samples=tuple(samples), seed=seed))
        valid, retry = check_assignments(numbers, answer or [], options)
        routed: Routed = {items[n - 1]: (None, "none fits") if v == NONE_FITS else (v, None)
                          for n, v in valid.items()}
        self.store.save_routes(f"{node.id}#{round_index}", {**routed, **{items[n - 1]: (None, RETRY) for n in retry}})
