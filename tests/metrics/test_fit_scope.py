"""A dataset's lexical scores do not depend on what else is evaluated; eval's projections are PCA by default,
t-SNE is capped and every plot step is announced (issue 15, findings 4 and 10)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from treesynth.cli import evaluate as evaluate_cli
from treesynth.cli.evaluate import EvalFlags
from treesynth.metrics.data import load_dataset
from treesynth.metrics.embedders import Embedder, HashedTfidfEmbedder, Matrix
from treesynth.metrics.plots import PlotOptions, projection_limit, projection_sample, write_plots
from treesynth.metrics.report import EvalOptions, evaluate, render_markdown


def invoke(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    evaluate_cli.register(app)

    @app.callback()
    def main() -> None:
        """Test app."""

    result = CliRunner().invoke(app, ["eval", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def other_dataset(tmp_path: Path) -> Path:
    """A dataset sharing some words with the run directory and adding many of its own (moves a joint IDF)."""
    path = tmp_path / "other.jsonl"
    rows = [{"text": f"Sam has {i} apples; the harbour crane lifts {i * 3} containers of steel at dawn."}
            for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_lexical_scores_are_the_same_alone_and_beside_another_dataset(run_dir: Path, tmp_path: Path) -> None:
    alone = evaluate([load_dataset(run_dir)], HashedTfidfEmbedder())
    beside = evaluate([load_dataset(run_dir), load_dataset(other_dataset(tmp_path))], HashedTfidfEmbedder())
    assert alone.results[0].metrics["embedding"] == beside.results[0].metrics["embedding"]
    assert np.array_equal(alone.results[0].embeddings, beside.results[0].embeddings)
    assert alone.embedder_fit == beside.embedder_fit == "dataset"


def test_the_cli_records_and_states_the_fit(run_dir: Path, tmp_path: Path) -> None:
    other = other_dataset(tmp_path)
    code, out, err = invoke(str(run_dir), "--embedder", "lexical", "--no-plots", "--out", str(tmp_path / "alone"))
    assert code == 0, err
    code, _, err = invoke(str(run_dir), str(other), "--embedder", "lexical", "--no-plots", "--out",
                          str(tmp_path / "two"))
    assert code == 0, err
    alone = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert alone["datasets"][0]["embedding"] == two["datasets"][0]["embedding"]
    assert alone["embedder_fit"] == two["embedder_fit"] == two["options"]["embedder_fit"] == "dataset"
    assert "fitted on each dataset alone" in (tmp_path / "two" / "report.md").read_text()
    assert "fitted on each dataset alone" in out


def test_a_joint_fit_is_opt_in_and_said_so(run_dir: Path, tmp_path: Path) -> None:
    other = other_dataset(tmp_path)
    args = ("--embedder", "lexical", "--no-plots", "--embedder-fit", "joint")
    code, _, err = invoke(str(run_dir), str(other), *args, "--out", str(tmp_path / "joint"))
    assert code == 0, err
    joint = json.loads((tmp_path / "joint" / "metrics.json").read_text())
    assert joint["embedder_fit"] == joint["options"]["embedder_fit"] == "joint"
    assert "fitted on all inputs together" in (tmp_path / "joint" / "report.md").read_text()
    alone = evaluate([load_dataset(run_dir)], HashedTfidfEmbedder()).results[0].metrics["embedding"]
    assert joint["datasets"][0]["embedding"]["vendi"] != pytest.approx(alone["vendi"], abs=1e-9)
    code, _, err = invoke(str(run_dir), *args, "--embedder-fit", "both", "--out", str(tmp_path / "bad"))
    assert code == 2 and err.startswith("error: --embedder-fit")


class FixedEmbedder(Embedder):
    """A model that fits nothing: vectors from text lengths."""

    name = "fixed"

    def embed(self, texts: Sequence[str]) -> Matrix:
        return np.array([[len(t), 1.0 + len(t) % 7] for t in texts], dtype=np.float32)


def test_a_fixed_model_reports_no_fit(run_dir: Path) -> None:
    result = evaluate([load_dataset(run_dir)], FixedEmbedder(), options=EvalOptions(embedder_fit="joint"))
    report = result.to_dict()
    assert report["embedder_fit"] == "none"
    assert "nothing fitted on the inputs" in render_markdown(report)


def test_projection_is_pca_by_default() -> None:
    assert EvalFlags().projection == "pca" and PlotOptions().method == "pca"
    assert projection_limit(5000, PlotOptions()) == 2000
    assert projection_limit(30, PlotOptions()) == 30


def test_tsne_runs_on_a_capped_subsample() -> None:
    pytest.importorskip("sklearn")
    opts = PlotOptions(method="tsne", max_points=2000)
    assert projection_limit(5000, opts) == 1000
    idx = projection_sample(5000, opts)
    assert len(idx) == 1000 and len(set(idx.tolist())) == 1000 and list(idx) == sorted(idx)
    assert projection_limit(5000, PlotOptions(method="tsne", max_points=300)) == 300


def test_every_plot_step_is_announced(run_dir: Path, tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    pytest.importorskip("matplotlib")
    second = make_run_dir(tmp_path / "b" / "run", per_leaf=3, seed=2)
    result = evaluate([load_dataset(run_dir), load_dataset(second)], HashedTfidfEmbedder())
    calls: list[tuple[str, int, int]] = []
    plots = write_plots(result, tmp_path / "plots",
                        progress=lambda label, done, total: calls.append((label, done, total)))
    total = calls[0][2]
    assert [done for _, done, _ in calls] == list(range(total + 1)) and total == len(plots) == 6
    labels = [label for label, _, _ in calls]
    assert labels[0] == "PCA of 24 embeddings (run1)" and "PCA of 36 embeddings (all datasets)" in labels
    code, _, err = invoke(str(run_dir), "--embedder", "lexical", "--out", str(tmp_path / "cli"))
    assert code == 0, err
    assert "plotting 1/2: PCA of 24 embeddings (run1)" in err and "t-SNE" not in err
