"""Leaf allocation: how many of the ``n`` samples each leaf must deliver.

The final allocation is proportional to leaf weights (uniform, except that every infinite step on a
leaf's path multiplies its weight by ``infinite_weight``), rounded by largest remainder so the quotas
add up to exactly ``n``. While the tree is still growing, :class:`LeafPlanner` hands out *safe* quotas:
``floor(n * w / W_max)`` where ``W_max`` bounds the final total weight (known leaves plus the most weight
every pending node could still grow into). A safe quota never exceeds the final one, so leaf synthesis
can start as soon as a leaf's path is final, with no level barrier and no over-generation.

Leaves may belong to *groups* (the branches of a predefined first split, e.g. the seven MATH subjects):
``n`` is then first split evenly over the groups (largest remainder), and each group's share over its own
leaves as above, so every group gets the same number of samples however many leaves it grew (an early
leaf, an infinite child). Safe quotas are computed per group against the group's own bound.

Leaves that use up their call budget (see :func:`call_budget`) are *exhausted*: they keep what they have
and their shortfall is spread evenly over the other open leaves of their group (of the whole tree when
the group has none left; unless ``redistribute`` is off, as when
balancing to per-leaf targets).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field


def allocate(weights: dict[str, float], total: int) -> dict[str, int]:
    """Split ``total`` over ``weights`` proportionally; largest remainder, ties broken by leaf id."""
    if not weights:
        return {}
    mass = sum(weights.values())
    exact = {leaf: total * w / mass for leaf, w in weights.items()}
    quotas = {leaf: math.floor(x) for leaf, x in exact.items()}
    left = total - sum(quotas.values())
    for leaf in sorted(exact, key=lambda k: (quotas[k] - exact[k], k))[:left]:
        quotas[leaf] += 1
    return quotas


def lift(quotas: dict[str, int], floors: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """``quotas`` with every leaf raised to its floor (the samples it already holds), keeping their sum.

    The excess comes off the leaves above their floor, one sample at a time from the leaf with the most
    samples per unit of weight (ties: the larger leaf id). A run extended to a larger ``n`` keeps every sample
    although largest-remainder rounding may give a leaf one sample less at the larger ``n``. When the floors
    add up to more than the quotas, the sum grows to theirs.
    """
    lifted = {leaf: max(quota, floors.get(leaf, 0)) for leaf, quota in quotas.items()}
    excess = sum(lifted.values()) - sum(quotas.values())
    while excess > 0:
        spare = [leaf for leaf, quota in lifted.items() if quota > floors.get(leaf, 0)]
        if not spare:
            break
        lifted[max(spare, key=lambda leaf: (lifted[leaf] / weights[leaf] if weights[leaf] else math.inf, leaf))] -= 1
        excess -= 1
    return lifted


def spread(amount: int, leaves: list[str]) -> dict[str, int]:
    """Spread ``amount`` evenly over ``leaves`` (sorted order takes the remainder)."""
    if not leaves:
        return {}
    share, rest = divmod(amount, len(leaves))
    return {leaf: share + (1 if i < rest else 0) for i, leaf in enumerate(sorted(leaves))}


def call_budget(quota: int, per_call: int, factor: float) -> int:
    """Most synthesis calls a leaf with ``quota`` may make: ``factor`` times what it needs, plus two."""
    if quota <= 0:
        return 0
    return math.ceil(math.ceil(quota / per_call) * factor) + 2


@dataclass
class LeafPlanner:
    """Tracks the growing tree's leaves and hands out quotas; wakes waiting leaf workers on changes."""

    total: int
    level_weight: float
    max_depth: int
    weights: dict[str, float] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)
    group: dict[str, str] = field(default_factory=dict)
    """Node id -> its group (nodes not listed are in the one default group ``""``)."""
    have: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    """Samples each leaf held when it was registered (from earlier sessions): its final quota is never less."""
    exhausted: dict[str, int] = field(default_factory=dict)
    final: bool = False
    redistribute: bool = True
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _version: int = 0
    _cached: tuple[int, dict[str, int]] = (-1, {})

    def add_pending(self, node_id: str, depth: int, path_weight: float, group: str = "") -> None:
        """A node that may still grow: it bounds its subtree's weight by ``level_weight ** remaining``.

        ``group`` names the node's group (see the module docstring); the leaves it grows into inherit it.
        """
        self.pending[node_id] = path_weight * self.level_weight ** max(0, self.max_depth - depth)
        if group:
            self.group[node_id] = group

    async def resolve(self, node_id: str, leaf_weight: float | None = None, *, have: int = 0,
                      exhausted_at: int | None = None) -> None:
        """The pending node is expanded; if it is a leaf, register it with its weight and stored progress."""
        self.pending.pop(node_id, None)
        if leaf_weight is not None:
            self.weights[node_id] = leaf_weight
            self.have[node_id] = self.kept[node_id] = have
            if exhausted_at is not None:
                self.exhausted[node_id] = exhausted_at
        await self._notify()

    async def finish_tree(self) -> None:
        """The tree is complete: switch from safe to final quotas."""
        self.pending.clear()
        self.final = True
        await self._notify()

    def quotas(self) -> dict[str, int]:
        """Current quota of every known leaf (safe while the tree grows, exact once it is final)."""
        if self._cached[0] != self._version:
            self._cached = (self._version, self._compute_quotas())
        return self._cached[1]

    def group_totals(self) -> dict[str, int]:
        """Samples each group must deliver: ``total`` split evenly over the groups of known and pending nodes."""
        groups = {self.group.get(node, "") for node in (*self.weights, *self.pending)}
        return allocate(dict.fromkeys(groups, 1.0), self.total)

    def _compute_quotas(self) -> dict[str, int]:
        totals = self.group_totals()
        members: dict[str, list[str]] = {g: [] for g in totals}
        for leaf in self.weights:
            members[self.group.get(leaf, "")].append(leaf)
        if not self.final:
            bound = dict.fromkeys(totals, 0.0)
            for node, w in (*self.weights.items(), *self.pending.items()):
                bound[self.group.get(node, "")] += w
            return {leaf: math.floor(totals[g] * self.weights[leaf] / bound[g]) if bound[g] else 0
                    for g, leaves in members.items() for leaf in leaves}
        base = lift({leaf: q for g, leaves in members.items()
                     for leaf, q in allocate({leaf: self.weights[leaf] for leaf in leaves}, totals[g]).items()},
                    self.kept, self.weights)
        quotas = {leaf: min(base[leaf], got) for leaf, got in self.exhausted.items()}
        open_leaves = [leaf for leaf in base if leaf not in self.exhausted]
        extra = dict.fromkeys(open_leaves, 0)
        for leaves in members.values():
            short = sum(max(0, base[leaf] - self.exhausted[leaf]) for leaf in leaves if leaf in self.exhausted)
            takers = [leaf for leaf in leaves if leaf not in self.exhausted] or open_leaves
            for leaf, more in spread(short if self.redistribute else 0, takers).items():
                extra[leaf] += more
        quotas.update({leaf: base[leaf] + extra[leaf] for leaf in open_leaves})
        return quotas

    def quota(self, leaf_id: str) -> int:
        """The quota of one leaf."""
        return self.quotas().get(leaf_id, 0)

    async def report(self, leaf_id: str, have: int) -> None:
        """A leaf now holds ``have`` accepted samples (wakes waiters only when that settles the plan)."""
        self.have[leaf_id] = have
        if self.settled():
            await self._notify()

    async def exhaust(self, leaf_id: str, have: int) -> None:
        """A leaf used its call budget at ``have`` samples; its shortfall moves to the other leaves."""
        self.exhausted[leaf_id] = have
        self.have[leaf_id] = have
        await self._notify()

    def settled(self) -> bool:
        """The tree is final and every leaf holds its quota or is exhausted."""
        if not self.final:
            return False
        quotas = self.quotas()
        return all(leaf in self.exhausted or self.have.get(leaf, 0) >= q for leaf, q in quotas.items())

    def shortfall(self) -> int:
        """Samples missing from the target once settled (non-zero only if every leaf is exhausted)."""
        return max(0, self.total - sum(min(self.have.get(k, 0), q) for k, q in self.quotas().items()))

    async def wait_for_work(self, leaf_id: str, have: int) -> bool:
        """Block until ``leaf_id``'s quota exceeds ``have`` (True) or the plan is settled (False)."""
        async with self.changed:
            while True:
                if leaf_id not in self.exhausted and self.quota(leaf_id) > have:
                    return True
                if self.settled() or leaf_id in self.exhausted:
                    return False
                await self.changed.wait()

    async def _notify(self) -> None:
        self._version += 1
        async with self.changed:
            self.changed.notify_all()
