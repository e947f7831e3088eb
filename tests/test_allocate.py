"""Leaf allocation: exact totals, safe quotas while the tree grows, shortfall redistribution."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from treesynth.synthesis.allocate import LeafPlanner, allocate, call_budget, lift, spread


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0.5, 20), min_size=1, max_size=40),
       st.integers(0, 5000))
def test_allocate_is_exact_and_proportional(weights: dict[str, float], total: int) -> None:
    quotas = allocate(weights, total)
    assert sum(quotas.values()) == total
    mass = sum(weights.values())
    for leaf, w in weights.items():
        assert abs(quotas[leaf] - total * w / mass) < 1


def test_allocate_uniform_and_weighted() -> None:
    assert allocate({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert allocate({"a": 4, "b": 1}, 10) == {"a": 8, "b": 2}


def test_spread_and_budget() -> None:
    assert spread(5, ["b", "a"]) == {"a": 3, "b": 2}
    assert call_budget(0, 5, 2.0) == 0
    assert call_budget(10, 5, 2.0) == 6


def test_safe_quotas_never_exceed_final_quotas() -> None:
    async def scenario() -> None:
        planner = LeafPlanner(total=100, level_weight=3, max_depth=2)
        planner.add_pending("root", 0, 1)
        planner.add_pending("a", 1, 1)
        planner.add_pending("b", 1, 1)
        await planner.resolve("root")
        await planner.resolve("a", leaf_weight=1)          # early leaf at depth 1
        early = planner.quota("a")
        planner.add_pending("b1", 2, 1)
        planner.add_pending("b2", 2, 1)
        await planner.resolve("b")
        assert planner.quota("a") >= early                  # safe quotas only grow
        await planner.resolve("b1", leaf_weight=1)
        await planner.resolve("b2", leaf_weight=1)
        safe = planner.quotas()
        await planner.finish_tree()
        final = planner.quotas()
        assert sum(final.values()) == 100
        assert all(safe[k] <= final[k] for k in final)
        assert 0 < early <= final["a"]

    asyncio.run(scenario())


def test_exhausted_leaf_shortfall_moves_to_other_leaves() -> None:
    async def scenario() -> None:
        planner = LeafPlanner(total=30, level_weight=3, max_depth=1)
        for leaf in ("a", "b", "c"):
            await planner.resolve(leaf, leaf_weight=1)
        await planner.finish_tree()
        assert planner.quotas() == {"a": 10, "b": 10, "c": 10}
        await planner.exhaust("a", 4)
        assert planner.quotas() == {"a": 4, "b": 13, "c": 13}
        await planner.report("b", 13)
        assert not planner.settled()
        await planner.report("c", 13)
        assert planner.settled() and planner.shortfall() == 0

    asyncio.run(scenario())


def test_groups_get_equal_shares_however_many_leaves_they_grow() -> None:
    # issue 15 #1: a predefined first split's values are groups; an early leaf (one leaf) and a subtree of four
    # leaves, one of them under an infinite step (weight 4), still get the same share of n
    async def scenario() -> None:
        planner = LeafPlanner(total=100, level_weight=4, max_depth=2)
        planner.add_pending("root", 0, 1)
        for group in ("algebra", "geometry", "number theory"):
            planner.add_pending(group, 1, 1, group)
        await planner.resolve("root")
        await planner.resolve("algebra", leaf_weight=1)  # an early leaf: its whole group
        early = planner.quota("algebra")
        for leaf, weight in (("g1", 1), ("g2", 1), ("g3", 1), ("g4", 4)):
            planner.add_pending(leaf, 2, weight, "geometry")
        await planner.resolve("geometry")
        for leaf, weight in (("g1", 1), ("g2", 1), ("g3", 1), ("g4", 4)):
            await planner.resolve(leaf, leaf_weight=weight)
        planner.add_pending("n1", 2, 1, "number theory")
        planner.add_pending("n2", 2, 1, "number theory")
        await planner.resolve("number theory")
        await planner.resolve("n1", leaf_weight=1)
        safe = planner.quotas()
        await planner.resolve("n2", leaf_weight=1)
        await planner.finish_tree()
        final = planner.quotas()
        assert planner.group_totals() == {"algebra": 34, "geometry": 33, "number theory": 33}
        assert final["algebra"] == 34 and early <= 34
        assert sum(final[g] for g in ("g1", "g2", "g3", "g4")) == 33 and final["g4"] == 19  # 4/7 of 33
        assert final["n1"] + final["n2"] == 33
        assert all(safe[k] <= final[k] for k in safe)

    asyncio.run(scenario())


def test_an_exhausted_leafs_shortfall_stays_in_its_group() -> None:
    async def scenario() -> None:
        planner = LeafPlanner(total=40, level_weight=2, max_depth=1)
        for leaf, group in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")):
            planner.add_pending(leaf, 1, 1, group)
            await planner.resolve(leaf, leaf_weight=1)
        await planner.finish_tree()
        assert planner.quotas() == {"a1": 10, "a2": 10, "b1": 10, "b2": 10}
        await planner.exhaust("a1", 4)
        assert planner.quotas() == {"a1": 4, "a2": 16, "b1": 10, "b2": 10}  # group a keeps its 20
        await planner.exhaust("a2", 6)
        assert planner.quotas() == {"a1": 4, "a2": 6, "b1": 15, "b2": 15}  # group a is spent: b takes the rest

    asyncio.run(scenario())


def test_a_larger_total_never_takes_a_sample_a_leaf_already_holds() -> None:
    weights = {"a": 3.0, "b": 3.0, "c": 1.0, "d": 1.0}
    assert allocate(weights, 3) == {"a": 1, "b": 1, "c": 1, "d": 0}
    assert allocate(weights, 4)["c"] == 0  # largest remainder alone would drop c's sample at n=4

    async def scenario() -> dict[str, int]:
        planner = LeafPlanner(total=4, level_weight=1, max_depth=0)
        for leaf, weight in weights.items():  # the samples an n=3 run delivered
            await planner.resolve(leaf, weight, have={"a": 1, "b": 1, "c": 1, "d": 0}[leaf])
        await planner.finish_tree()
        return planner.quotas()

    quotas = asyncio.run(scenario())
    assert sum(quotas.values()) == 4 and quotas["c"] == 1 and quotas["a"] >= 1 and quotas["b"] >= 1
    assert lift({"a": 2, "b": 2, "c": 0}, {"c": 1}, {"a": 3.0, "b": 3.0, "c": 1.0}) == {"a": 2, "b": 1, "c": 1}
