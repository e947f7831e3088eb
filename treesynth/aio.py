"""The one bridge between sync callers and the async core.

:func:`run_sync` is every sync facade (``TreeSynth.run``, ``Balancer.balance``, the baselines, compile):
it works from plain scripts and from inside a running event loop (Jupyter, an async caller) alike.

:class:`LoopThread` is for sync code that calls into async code many times from several threads, as DSPy
optimizers do: every coroutine runs on one long-lived loop, so asyncio state shared across calls (one
:class:`~treesynth.providers.Gateway`: its circuit breaker, adaptive limit and engine queue) lives on a
single loop instead of being rebuilt per call.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


def spawn(group: asyncio.TaskGroup, coroutine: Coroutine[Any, Any, Any]) -> bool:
    """Start ``coroutine`` in ``group``; if the group is already shutting down (a sibling failed), close it.

    ``TaskGroup.create_task`` raises on a group that is aborting and leaves the coroutine never awaited
    (a ``RuntimeWarning`` at garbage collection). Work that would start then is moot: the group re-raises
    the sibling's error. Returns whether the task was started.
    """
    try:
        group.create_task(coroutine)
    except RuntimeError:
        coroutine.close()
        return False
    return True


async def gather_or_cancel(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``coroutines`` concurrently and return their results in order, like :func:`asyncio.gather`, except
    that the first failure cancels the others and is raised as itself (not as an exception group).

    ``asyncio.gather`` leaves the siblings of a failed coroutine running, so calls in flight when a provider
    stop or a spending cap ends a run would still write to its store after the store was closed.
    """
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as exc:
        raise first_exception(exc) from None
    return [task.result() for task in tasks]


def first_exception(exc: BaseException) -> BaseException:
    """The first leaf exception of a (nested) exception group, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``make()`` to completion from sync code.

    Uses ``asyncio.run`` when no loop runs in this thread; inside a running loop (a notebook, an async
    caller) it runs in a fresh loop on a helper thread, with the caller's context variables.
    """
    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, main()).result()


class LoopThread:
    """One event loop on a daemon thread; :meth:`run` executes a coroutine on it from any other thread.

    Use as a context manager (the loop stops and the thread joins on exit). Each coroutine runs with the
    *caller's* context variables (DSPy's ``dspy.context`` settings included), not the loop thread's.
    """

    def __init__(self, name: str = "treesynth-loop") -> None:
        """Create the loop (started by ``__enter__``)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def __enter__(self) -> LoopThread:
        """Start the loop thread."""
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Cancel what still runs, stop the loop and join its thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._cancel_pending(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _cancel_pending(self) -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (raises what it raises).

        Must not be called from the loop's own thread (that would deadlock): there, ``await`` instead.
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("LoopThread.run called from its own loop; await the coroutine instead")
        if not self._thread.is_alive():
            coroutine.close()
            raise RuntimeError("LoopThread.run called outside its `with` block")
        done: Future[T] = Future()
        context = contextvars.copy_context()

        def start() -> None:
            task = self._loop.create_task(coroutine, context=context)
            task.add_done_callback(lambda finished: _settle(done, finished))

        self._loop.call_soon_threadsafe(start)
        return done.result()


def _settle(done: Future[T], task: asyncio.Task[T]) -> None:
    """Copy a finished task's outcome onto a thread-safe future."""
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())
