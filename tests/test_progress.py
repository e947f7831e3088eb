"""The live progress display: a line that keeps its essentials at 80 columns, plain periodic lines in a log,
throttled updates, a final frame with the final counts, and counts that agree with ``run.json``."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from treesynth.aio import run_sync
from treesynth.cli.progress import THROTTLE_SECONDS, ProgressView, fit_line, resumed_line
from treesynth.config import RunConfig
from treesynth.pipeline import Progress, TreeSynth
from treesynth.record import Reused, read_record

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ManualClock:
    """A clock that only moves when the test says so (throttle, log interval and ETA are timed by it)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def console(*, terminal: bool, width: int = 80) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None)


def output(view: ProgressView) -> str:
    file = view.console.file
    assert isinstance(file, io.StringIO)
    return ANSI.sub("", file.getvalue())


def busy(samples: int = 43) -> Progress:
    return Progress(target=100, nodes=185, leaves=120, tree_done=True, samples=samples, calls=285, failed_calls=2,
                    tokens=1_234_567, cost_usd=0.0123)


@pytest.mark.parametrize("width", [80, 64, 52])
def test_the_line_keeps_count_calls_cost_and_eta_at_narrow_widths(width: int) -> None:
    bar, text = fit_line(busy(), width, elapsed=62.0, eta=83.0)
    assert "43/100" in text and "calls 285 (2 failed)" in text and "$0.0123" in text and "ETA 1:23" in text
    assert (bar + 1 if bar else 0) + len(text) <= width


def test_a_wide_line_adds_tree_bar_elapsed_and_tokens() -> None:
    bar, text = fit_line(busy(), 140, elapsed=62.0, eta=83.0)
    assert bar >= 10
    assert "tree: 185 nodes, 120 leaves" in text and "elapsed 1:02" in text and "tokens 1,234,567" in text


def test_rendered_on_an_80_column_terminal_every_line_fits_and_keeps_the_essentials() -> None:
    clock = ManualClock()
    progress = busy(samples=0)
    with ProgressView(enabled=True, target=100, clock=clock, console=console(terminal=True)) as view:
        view.update(progress)
        clock.now += 30
        progress.samples = 43
        view.update(progress)
    text = output(view)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and all(len(line) <= 80 for line in lines)
    last = lines[-1]
    assert "43/100" in last and "calls 285" in last and "$0.0123" in last
    assert "ETA 0:40" in last  # 43 samples in 30 s: the other 57 in about 40 s


def test_without_a_terminal_plain_lines_come_periodically_and_once_at_the_end() -> None:
    clock = ManualClock()
    progress = Progress(target=100)
    with ProgressView(enabled=True, target=100, clock=clock, console=console(terminal=False), interval=10) as view:
        for step in range(25):  # 25 updates, one per second
            progress.samples, progress.calls = step * 4, step * 11
            view.update(progress)
            clock.now += 1
    lines = output(view).splitlines()
    assert len(lines) == 3, lines  # at 10 s, at 20 s, and the final line
    assert all(line.startswith("progress: ") for line in lines)
    assert lines[0].startswith("progress: 40/100 samples | calls 110 |")
    assert lines[-1].startswith("progress: 96/100 samples | calls 264 |") and "ETA 0:01" in lines[-1]
    assert "\x1b" not in output(view) and max(map(len, lines)) > 80, "a log line is never cut to a width"


def test_terminal_updates_are_throttled_and_the_final_frame_shows_the_last_snapshot() -> None:
    clock = ManualClock()
    progress = Progress(target=10)
    with ProgressView(enabled=True, target=10, clock=clock, console=console(terminal=True)) as view:
        progress.samples, progress.calls = 1, 3
        view.update(progress)  # the first update renders
        frames = output(view).count("1/10")
        clock.now += THROTTLE_SECONDS / 2
        progress.samples = 4
        view.update(progress)  # within the throttle interval of the last render: not rendered
        assert "4/10" not in output(view) and output(view).count("1/10") == frames
        clock.now += THROTTLE_SECONDS
        progress.samples = 6
        view.update(progress)  # past the interval: rendered
        assert "6/10" in output(view)
        progress.samples, progress.calls, progress.tree_done = 10, 17, True
        view.update(progress)  # throttled again (the clock did not move)...
        assert "10/10" not in output(view)
    assert "10/10" in output(view) and "calls 17" in output(view)  # ...but the final frame shows it


def test_disabled_view_and_a_view_never_updated_render_nothing() -> None:
    with ProgressView(enabled=False, target=5, console=console(terminal=True)) as view:
        view.update(Progress(target=5, samples=5))
    assert output(view) == ""
    with ProgressView(enabled=True, target=5, console=console(terminal=True)) as idle:
        pass  # e.g. the run stopped with a usage error before it started
    assert output(idle) == ""


def test_a_resumed_run_says_what_it_reused_and_a_complete_one_draws_nothing() -> None:
    reused = Reused(nodes=170, known_nodes=185, samples=43, calls=96, status="interrupted", target=100)
    assert resumed_line(reused, 100) == "resumed: 170/185 nodes, 43 samples, 96 LLM calls from earlier sessions"
    done = reused.model_copy(update={"status": "complete", "samples": 100})
    assert resumed_line(done, 150).endswith("; extending 100 -> 150 samples")
    with ProgressView(enabled=True, target=100, console=console(terminal=False)) as view:
        view.update(Progress(target=100, samples=43, reused=reused))
    assert output(view).splitlines()[0] == resumed_line(reused, 100)
    with ProgressView(enabled=True, target=100, console=console(terminal=True)) as complete:
        complete.update(Progress(target=100, samples=100, reused=done))
    assert output(complete) == ""


def test_live_counts_agree_with_the_final_ledger_after_a_dry_run(tmp_path: Path,
                                                                fake_config: Callable[..., RunConfig]) -> None:
    # the dry run's tree calls are in the run's ledger; the live counter used to start at 0 and miss them
    run_sync(lambda: TreeSynth(fake_config()).arun("grade-school math word problems", tmp_path, tree_only=True))
    seen: list[Progress] = []
    TreeSynth(fake_config(), on_progress=lambda p: seen.append(replace(p))).run("grade-school math word problems",
                                                                                 tmp_path)
    record = read_record(tmp_path / "run.json")
    last = seen[-1]
    assert last.calls == record.llm.calls and last.samples == record.counts.samples
    assert last.tokens == record.llm.prompt_tokens + record.llm.completion_tokens
    assert seen[0].reused is not None and seen[0].calls == seen[0].reused.calls > 0
