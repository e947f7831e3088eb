"""The live progress display: throttled updates, and a final frame that shows the final counts."""

from __future__ import annotations

import pytest

from treesynth.cli.progress import THROTTLE_SECONDS, ProgressView
from treesynth.pipeline import Progress


class ManualClock:
    """A clock that only moves when the test says so (the throttle is timed by it, not by the machine)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_updates_are_throttled_and_the_final_frame_shows_the_last_snapshot(
        capsys: pytest.CaptureFixture[str]) -> None:
    clock = ManualClock()
    progress = Progress(target=10)
    with ProgressView(enabled=True, target=10, clock=clock) as view:
        progress.samples, progress.calls = 1, 3
        view.update(progress)  # the first update renders
        assert view._bar.tasks[0].completed == 1
        clock.now += THROTTLE_SECONDS / 2
        progress.samples = 4
        view.update(progress)  # within the throttle interval of the last render: not rendered yet
        assert view._bar.tasks[0].completed == 1
        clock.now += THROTTLE_SECONDS
        progress.samples = 6
        view.update(progress)  # past the interval: rendered
        assert view._bar.tasks[0].completed == 6
        progress.samples, progress.calls, progress.tree_done = 10, 17, True
        view.update(progress)  # throttled again (the clock did not move)...
        assert view._bar.tasks[0].completed == 6
    assert view._bar.tasks[0].completed == 10  # ...but the final frame shows it
    err = capsys.readouterr().err
    assert "tree done" in err and "calls 17" in err


def test_disabled_view_renders_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressView(enabled=False, target=5) as view:
        view.update(Progress(target=5, samples=5))
    assert view._bar.tasks[0].completed == 0
    assert capsys.readouterr().err == ""
