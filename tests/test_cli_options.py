"""One options object and one error mapping for every command, checked in-process with Typer's CliRunner."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from treesynth.cli import app
from treesynth.cli import evaluate as evaluate_cli
from treesynth.cli import tree as tree_cli
from treesynth.cli._common import INTERRUPTED, cli_command, cli_errors
from treesynth.cli.options import TREE_SHAPE, RunOptions
from treesynth.errors import ConfigError, GenerationError, TreeSynthError

SHARED_FLAGS = {"model": "--model", "api_base": "--api-base", "structured_output": "--structured-output",
                "role_models": "--role-model", "role_temperatures": "--role-temperature", "depth": "--depth",
                "width": "--width", "pivots": "--pivots", "samples": "--samples",
                "samples_per_call": "--samples-per-call", "concurrency": "--concurrency", "seed": "--seed",
                "config": "--config", "near_dup": "--near-dup"}
OFFERED = {"run": set(SHARED_FLAGS), "compile": set(SHARED_FLAGS) - {"near_dup"},
           "balance": set(SHARED_FLAGS) - {"samples"},
           "tune": set(SHARED_FLAGS) - set(TREE_SHAPE)}


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def command_args(name: str, tmp: Path) -> list[str]:
    """Arguments that reach the command body of ``name`` (every required argument given)."""
    return {
        "run": ["run", "poems", "--model", "test/fake", "-q", "--out", str(tmp / "run")],
        "balance": ["balance", str(tmp / "data.jsonl"), "--task", "poems", "--out", str(tmp / "bal"), "--total", "4",
                    "--model", "test/fake"],
        "compile": ["compile", "poems", "--out", str(tmp / "program.json"), "--model", "test/fake"],
        "tune": ["tune", "poems", "--model", "test/fake", "--out", str(tmp / "tune")],
        "eval": ["eval", str(tmp / "data.jsonl"), "--out", str(tmp / "eval")],
        "tree show": ["tree", "show", str(tmp / "run")],
        "bench": ["bench", str(tmp / "sweep.yaml"), "--out", str(tmp / "sweep")],
    }[name]


def patch_first_step(name: str, monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make the first thing command ``name`` does raise ``error`` (as a Ctrl-C or a failure would)."""

    def boom(*args: object, **kwargs: object) -> None:
        raise error

    if name in OFFERED:
        monkeypatch.setattr(RunOptions, "to_config", boom)
    elif name == "eval":
        monkeypatch.setattr(evaluate_cli, "_check_options", boom)
    elif name == "tree show":
        monkeypatch.setattr(tree_cli, "load_tree", boom)
    else:
        from treesynth.sweep import Sweep

        monkeypatch.setattr(Sweep, "load", boom)


COMMANDS = ["run", "balance", "compile", "tune", "eval", "tree show", "bench"]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (KeyboardInterrupt(), 130, f"error: {INTERRUPTED}"),
        (ConfigError("--thing must be positive"), 2, "error: --thing must be positive"),
        (GenerationError("leaf n1 gave no samples", stage="leaf", node_id="n1"), 1,
         "error: leaf n1 gave no samples"),
        (TreeSynthError("store is locked"), 1, "error: store is locked"),
    ],
)
def test_every_command_maps_errors_the_same_way(name: str, error: BaseException, code: int, line: str,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_first_step(name, monkeypatch, error)
    exit_code, stdout, stderr = invoke(*command_args(name, tmp_path))
    assert exit_code == code, (stdout, stderr)
    assert stderr.strip().splitlines() == [line] and "Traceback" not in stdout


def test_ctrl_c_in_a_real_run_leaves_a_resumable_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.pipeline import TreeSynth

    out = tmp_path / "run"

    def interrupted(self: TreeSynth, task: object, run_dir: Path) -> None:
        run_dir.mkdir(parents=True)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(TreeSynth, "run", interrupted)
        code, _, stderr = invoke("run", "poems", "--model", "test/fake", "-q", "-n", "4", "--depth", "1",
                                 "--out", str(out))
    assert code == 130 and stderr.strip() == f"error: {INTERRUPTED}"
    assert "resume" in INTERRUPTED and "--out" in INTERRUPTED
    code, stdout, stderr = invoke("run", "poems", "--model", "test/fake", "-q", "-n", "4", "--depth", "1",
                                  "--out", str(out))
    assert code == 0, stderr
    assert stdout.startswith("complete: 4/4 samples")


def registered_commands(typer_app: typer.Typer, prefix: str = "") -> dict[str, object]:
    found = {prefix + str(info.name): info.callback for info in typer_app.registered_commands}
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None
        found |= registered_commands(group.typer_instance, f"{prefix}{group.name} ")
    return found


def test_every_registered_command_goes_through_the_one_error_mapping() -> None:
    commands = registered_commands(app)
    assert set(commands) == set(COMMANDS)
    for name, callback in commands.items():
        assert getattr(callback, "error_mapping", None) is cli_errors, name


@pytest.mark.parametrize("name", sorted(OFFERED))
def test_help_lists_the_shared_options(name: str) -> None:
    code, stdout, _ = invoke(name, "--help")
    assert code == 0
    for option, flag in SHARED_FLAGS.items():
        assert (f" {flag} " in stdout) == (option in OFFERED[name]), (name, flag)
    assert "Run seed (drives every per-call seed)." in stdout and "YAML config (or a run.json)." in stdout


def test_help_keeps_command_specific_options_and_their_order() -> None:
    _, stdout, _ = invoke("balance", "--help")
    order = ["--task", "--out", "--tree", "--per-leaf", "--total", "--target-dist", "--field", "--batch-size",
             "--model", "--config"]
    assert [stdout.index(f" {flag} ") for flag in order] == sorted(stdout.index(f" {flag} ") for flag in order)
    _, stdout, _ = invoke("tune", "--help")
    for flag in ("--trials", "--storage", "--study", "--out", "--diversity", "--cost", "--budget", "--embedder",
                 "--space", "--program", "--startup-trials", "--samples"):
        assert f" {flag} " in stdout, flag


def test_run_options_map_onto_the_run_config(tmp_path: Path) -> None:
    config = RunOptions(model="test/fake", api_base="http://h/v1", structured_output="json_object", depth=2,
                        width=3, pivots=4, samples=7, samples_per_call=2, concurrency=5, seed=9,
                        role_models=["leaf=test/fake"], role_temperatures=["pivots=0.5"]).to_config()
    assert (config.tree.depth, config.tree.width, config.tree.pivots) == (2, 3, 4)
    assert (config.synthesis.samples, config.synthesis.samples_per_call) == (7, 2)
    assert (config.concurrency, config.seed, config.model.api_base) == (5, 9, "http://h/v1")
    assert config.model.structured_output == "json_object"
    assert config.model.model_for("leaf") == "test/fake" and config.model.temperature("pivots") == 0.5
    file = tmp_path / "c.yaml"
    file.write_text(config.dump_yaml())
    loaded = RunOptions(config=file, seed=1).to_config()  # options not given keep the file's values
    assert loaded.tree.depth == 2 and loaded.seed == 1 and loaded.model.model == "test/fake"
    with pytest.raises(ConfigError, match="--role-temperature expects ROLE=VALUE"):
        RunOptions(model="test/fake", role_temperatures=["leaf"]).to_config()


@dataclass(frozen=True)
class Knobs:
    """A test option group."""

    size: Annotated[int, typer.Option(help="How big.")] = 3
    label: Annotated[str | None, typer.Option(help="A label.")] = None


def test_cli_command_spreads_groups_and_packs_them_back() -> None:
    seen: list[tuple[str, Knobs]] = []

    @cli_command(omit=("label",))
    def demo(name: Annotated[str, typer.Argument()], knobs: Knobs) -> None:
        """Demo command."""
        seen.append((name, knobs))

    test_app = typer.Typer()
    test_app.command("demo")(demo)
    test_app.callback()(lambda: None)
    result = CliRunner().invoke(test_app, ["demo", "x", "--size", "5"])
    assert result.exit_code == 0, result.output
    assert seen == [("x", Knobs(size=5))]
    assert "--label" not in CliRunner().invoke(test_app, ["demo", "--help"]).stdout
    assert demo.__doc__ == "Demo command." and [f.name for f in fields(Knobs)] == ["size", "label"]
    with pytest.raises(TypeError, match="omit names no option-group field"):
        cli_command(omit=("nope",))(demo.__wrapped__)  # type: ignore[attr-defined]
