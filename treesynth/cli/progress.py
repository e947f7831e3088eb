"""Rich live progress for long runs: a samples bar plus node, leaf, call and token counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

THROTTLE_SECONDS = 0.1
"""Least time between two rendered updates (10 Hz)."""


class ProgressView:
    """Context manager rendering pipeline progress on stderr (no-op when disabled)."""

    def __init__(self, *, enabled: bool, target: int, clock: Callable[[], float] = time.monotonic) -> None:
        """Prepare a view for ``target`` samples; ``clock`` (seconds, monotonic) times the throttle."""
        self.enabled = enabled
        self._clock = clock
        self._last = float("-inf")  # the first update always renders
        self._latest: Any = None
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False, disable=not enabled,
        )
        self._task = self._bar.add_task("samples", total=target, detail="")

    def __enter__(self) -> ProgressView:
        """Start rendering."""
        self._bar.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Render the last snapshot (updates are throttled, so it may not be on screen yet), then stop."""
        if self.enabled and self._latest is not None:
            self._render(self._latest)
        self._bar.stop()

    def update(self, progress: Any) -> None:
        """Render a :class:`treesynth.pipeline.Progress` snapshot (throttled to 10 Hz)."""
        self._latest = progress
        now = self._clock()
        if not self.enabled or now - self._last < THROTTLE_SECONDS:
            return
        self._last = now
        self._render(progress)

    def note(self, line: str) -> None:
        """Print ``line`` on stderr above the live display (also when the display is disabled), unwrapped."""
        self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _render(self, progress: Any) -> None:
        tree = "tree done" if progress.tree_done else "growing tree"
        cost = "cost ?" if progress.cost_usd is None else f"${progress.cost_usd:.4f}"
        detail = (f"{tree} | nodes {progress.nodes} | leaves {progress.leaves} | calls {progress.calls}"
                  f" ({progress.failed_calls} failed) | tokens {progress.tokens:,} | {cost}")
        self._bar.update(self._task, completed=progress.samples, detail=detail)
