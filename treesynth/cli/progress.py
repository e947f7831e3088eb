"""Live progress of a run on stderr: one line that fits the terminal, or plain periodic lines in a log.

On a terminal the line always keeps the samples (``N/target``), the LLM calls, the cost and an ETA; the tree,
a bar, the elapsed time and the tokens are added while they fit. When stderr is not a terminal (a log file, CI),
a full plain line is written every :data:`LOG_INTERVAL_SECONDS` and once at the end. Its counters include the
work of earlier sessions of a resumed run, so the last line agrees with ``run.json``; a resumed run first says
what it reused, and a run that was already complete draws nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from treesynth.pipeline import Progress
    from treesynth.record import Reused

THROTTLE_SECONDS = 0.1
"""Least time between two rendered updates on a terminal (10 Hz)."""
LOG_INTERVAL_SECONDS = 10.0
"""Time between two plain lines when stderr is not a terminal."""
MIN_BAR = 10
"""Narrowest bar worth drawing; below it the line goes without one."""
MAX_BAR = 30
SEPARATOR = " | "


def clock_text(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _counted(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _parts(progress: Progress, elapsed: float, eta: float | None) -> tuple[list[str], list[str]]:
    """The segments that always show (samples, calls, cost, ETA) and the optional ones, most useful first."""
    calls = f"calls {progress.calls}" + (f" ({progress.failed_calls} failed)" if progress.failed_calls else "")
    cost = "cost ?" if progress.cost_usd is None else f"${progress.cost_usd:.4f}"
    tree = (f"{'tree' if progress.tree_done else 'growing tree'}: {_counted(progress.nodes, 'node')}, "
            f"{_counted(progress.leaves, 'leaf', 'leaves')}")
    essential = [f"{progress.samples}/{progress.target}", calls, cost,
                 "ETA ?" if eta is None else f"ETA {clock_text(eta)}"]
    return essential, [tree, f"elapsed {clock_text(elapsed)}", f"tokens {progress.tokens:,}"]


def fit_line(progress: Progress, width: int, *, elapsed: float, eta: float | None) -> tuple[int, str]:
    """The terminal line for ``width`` columns: a bar width (0: no bar) and the text after it.

    The essential segments always show; the tree, a bar of at least :data:`MIN_BAR`, the elapsed time and the
    tokens follow in that order of priority, each only if it still fits. A drawn bar takes the room left.
    """
    essential, optional = _parts(progress, elapsed, eta)
    chosen, with_bar = list(essential), False
    used = len(SEPARATOR.join(chosen))
    for part in [*optional[:1], "", *optional[1:]]:  # "": the bar's place in the order
        cost = MIN_BAR + 1 if not part else len(SEPARATOR) + len(part)
        if used + cost > width:
            continue
        used += cost
        if part:
            chosen.append(part)
        else:
            with_bar = True
    text = SEPARATOR.join(chosen)
    return (min(MAX_BAR, width - len(text) - 1) if with_bar else 0), text


def plain_line(progress: Progress, *, elapsed: float, eta: float | None) -> str:
    """The full line written to a log (no bar, never cut)."""
    essential, optional = _parts(progress, elapsed, eta)
    essential[0] += " samples"
    return "progress: " + SEPARATOR.join(essential + optional)


def resumed_line(reused: Reused, target: int) -> str:
    """What a resumed session reused, e.g. ``resumed: 170/185 nodes, 43 samples, 96 LLM calls ...``."""
    line = (f"resumed: {reused.nodes}/{reused.known_nodes} nodes, {reused.samples} samples, {reused.calls} LLM "
            "calls from earlier sessions")
    if reused.target is not None and reused.target < target:
        line += f"; extending {reused.target} -> {target} samples"
    return line


def already_complete(progress: Progress) -> bool:
    """The run was complete at this target before this session began: there is nothing to do or show."""
    reused = progress.reused
    return reused is not None and reused.status == "complete" and reused.target == progress.target


class _Line:
    """The terminal line as a renderable: it is laid out for the console's width at every refresh."""

    def __init__(self, view: ProgressView, progress: Progress) -> None:
        self.view = view
        self.progress = progress

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        elapsed, eta = self.view.timing(self.progress)
        bar, text = fit_line(self.progress, options.max_width, elapsed=elapsed, eta=eta)
        line = Text(no_wrap=True, overflow="ellipsis")
        if bar:
            done = min(bar, bar * self.progress.samples // max(1, self.progress.target))
            line.append("━" * done, style="bar.complete").append("─" * (bar - done), style="bar.back").append(" ")
        line.append(text)
        yield line


class ProgressView:
    """Context manager rendering pipeline progress on stderr (no-op when disabled).

    Nothing is drawn before the first update, so an error found before the run starts leaves stderr to it.
    ``clock`` (seconds, monotonic) times the throttle, the log interval, the elapsed time and the ETA;
    ``console`` defaults to stderr.
    """

    def __init__(self, *, enabled: bool, target: int, clock: Callable[[], float] = time.monotonic,
                 console: Console | None = None, interval: float = LOG_INTERVAL_SECONDS) -> None:
        """Prepare a view for ``target`` samples; see the class docstring."""
        self.enabled = enabled
        self.target = target
        self.console = console or Console(stderr=True)
        self.interval = interval
        self._clock = clock
        self._start: tuple[float, int] | None = None  # clock and samples at the first update
        self._last = float("-inf")
        self._latest: Progress | None = None
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        """Nothing to start: the first update starts the display."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Show the last snapshot (updates are throttled, so it may not be on screen yet), then stop."""
        latest = self._latest
        if latest is None or not self.enabled or already_complete(latest):
            return
        if self._live is not None:
            self._live.update(_Line(self, latest), refresh=True)
            self._live.stop()
        else:
            self._write(latest)

    def timing(self, progress: Progress) -> tuple[float, float | None]:
        """Seconds since the first update, and the ETA from this session's sample rate (``None``: no rate yet)."""
        now = self._clock()
        start, start_samples = self._start or (now, progress.samples)
        elapsed, gained = now - start, progress.samples - start_samples
        if progress.samples >= progress.target:
            return elapsed, 0.0
        return elapsed, (progress.target - progress.samples) * elapsed / gained if gained > 0 else None

    def update(self, progress: Progress) -> None:
        """Show a :class:`treesynth.pipeline.Progress` snapshot (throttled on a terminal, periodic in a log)."""
        if not self.enabled or already_complete(progress):
            return
        now = self._clock()
        if self._latest is None:
            self._start, self._last = (now, progress.samples), now
            if progress.reused is not None:
                print(resumed_line(progress.reused, progress.target), file=self.console.file, flush=True)
        self._latest = progress
        if not self.console.is_terminal:
            if now - self._last >= self.interval:
                self._last = now
                self._write(progress)
            return
        if now - self._last < THROTTLE_SECONDS and self._live is not None:
            return
        self._last = now
        if self._live is None:
            self._live = Live(_Line(self, progress), console=self.console, auto_refresh=False)
            self._live.start(refresh=True)
        else:
            self._live.update(_Line(self, progress), refresh=True)

    def note(self, line: str) -> None:
        """Print ``line`` on stderr above the live display (also when the display is disabled), unwrapped."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _write(self, progress: Progress) -> None:
        elapsed, eta = self.timing(progress)
        print(plain_line(progress, elapsed=elapsed, eta=eta), file=self.console.file, flush=True)
