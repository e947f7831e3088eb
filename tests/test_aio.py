"""The sync/async bridge: run_sync from plain code and from inside a running loop; LoopThread runs every
coroutine on one loop, with the caller's context variables, from many threads."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor
from pathlib import Path

import pytest

from treesynth.aio import LoopThread, run_sync, spawn
from treesynth.config import RunConfig
from treesynth.pipeline import TreeSynth

COLOUR: contextvars.ContextVar[str] = contextvars.ContextVar("colour", default="none")


async def answer(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


def test_run_sync_works_with_and_without_a_running_loop() -> None:
    assert run_sync(lambda: answer(2)) == 4

    async def caller() -> int:
        COLOUR.set("blue")

        async def coloured() -> str:
            return COLOUR.get()

        assert run_sync(coloured) == "blue"  # the caller's context travels to the helper thread
        return run_sync(lambda: answer(5))

    assert asyncio.run(caller()) == 10


def test_loop_thread_runs_all_coroutines_on_one_loop_with_the_callers_context() -> None:
    loops: set[int] = set()
    lock = asyncio.Lock()  # an asyncio object shared across calls: fine because every call is on one loop

    async def work(index: int) -> tuple[int, str]:
        async with lock:
            loops.add(id(asyncio.get_running_loop()))
            await asyncio.sleep(0)
        return index, COLOUR.get()

    def from_thread(index: int) -> tuple[int, str]:
        COLOUR.set(f"thread-{index}")
        return runner.run(work(index))

    with LoopThread() as runner, ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(from_thread, range(8)))
    assert results == [(i, f"thread-{i}") for i in range(8)]
    assert len(loops) == 1


def test_loop_thread_raises_what_the_coroutine_raises_and_refuses_misuse() -> None:
    async def fail() -> None:
        raise KeyError("boom")

    runner = LoopThread()
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        runner.run(answer(1))
    with runner:
        with pytest.raises(KeyError, match="boom"):
            runner.run(fail())
        assert runner.run(answer(3)) == 6

        async def nested() -> int:
            return runner.run(answer(1))  # from the loop's own thread: would deadlock

        with pytest.raises(RuntimeError, match="its own loop"):
            runner.run(nested())


def test_leaving_the_loop_thread_cancels_what_still_runs() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    outcome: list[str] = []

    def wait_for_it() -> None:
        try:
            runner.run(forever())
        except CancelledError:
            outcome.append("cancelled")

    with LoopThread() as runner:
        waiter = threading.Thread(target=wait_for_it, daemon=True)
        waiter.start()
        assert started.wait(10)
    waiter.join(10)
    assert cancelled.is_set() and outcome == ["cancelled"]


def test_treesynth_run_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    config = RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 1, "tree.width": 3,
                                         "synthesis.samples": 6, "synthesis.samples_per_call": 3})

    async def notebook_cell() -> str:
        return TreeSynth(config).run("GSM8K-style grade-school math word problems", tmp_path / "run").status

    assert asyncio.run(notebook_cell()) == "complete"
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 6


async def test_spawn_into_a_group_that_is_shutting_down_closes_the_coroutine() -> None:
    """A task that keeps going after its group aborted (a sibling failed) must not leak an un-awaited coroutine."""
    late: list[tuple[bool, str]] = []

    async def child() -> None:
        raise AssertionError("never runs")

    async def failing() -> None:
        raise ValueError("boom")

    async def survivor(group: asyncio.TaskGroup) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # the group aborts: start no new work, and leave nothing dangling
            coroutine = child()
            late.append((spawn(group, coroutine), inspect.getcoroutinestate(coroutine)))
            raise

    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.TaskGroup() as group:
            assert spawn(group, survivor(group))
            await asyncio.sleep(0)
            spawn(group, failing())
    assert [type(e) for e in caught.value.exceptions] == [ValueError], "only the real error surfaces"
    assert late == [(False, inspect.CORO_CLOSED)]
