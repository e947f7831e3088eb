"""The live progress display: throttled updates, and a final frame that shows the final counts."""

from __future__ import annotations

import pytest

from treesynth.cli.progress import ProgressView
from treesynth.pipeline import Progress


def test_final_frame_shows_the_last_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(target=10)
    with ProgressView(enabled=True, target=10) as view:
        progress.samples, progress.calls = 1, 3
        view.update(progress)  # rendered
        progress.samples, progress.calls, progress.tree_done = 10, 17, True
        view.update(progress)  # within 0.1 s of the last: throttled, not rendered yet
        assert view._bar.tasks[0].completed == 1
    assert view._bar.tasks[0].completed == 10
    err = capsys.readouterr().err
    assert "tree done" in err and "calls 17" in err


def test_disabled_view_renders_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressView(enabled=False, target=5) as view:
        view.update(Progress(target=5, samples=5))
    assert view._bar.tasks[0].completed == 0
    assert capsys.readouterr().err == ""
