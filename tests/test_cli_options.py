"""One options object and one error mapping for every command, checked in-process with Typer's CliRunner."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import yaml
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
           "tune": set(SHARED_FLAGS) - set(TREE_SHAPE), "config show": set(SHARED_FLAGS)}


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
        "config show": ["config", "show", "--model", "test/fake"],
        "export": ["export", str(tmp / "run"), "--out", str(tmp / "export")],
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
    elif name == "export":
        import treesynth.export

        monkeypatch.setattr(treesynth.export, "export_run", boom)
    else:
        from treesynth.sweep import Sweep

        monkeypatch.setattr(Sweep, "load", boom)


COMMANDS = ["run", "balance", "compile", "tune", "eval", "tree show", "bench", "config show", "export"]


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
    code, stdout, _ = invoke(*name.split(), "--help")
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


# issue 15, finding 2: --analytic / --json only plan
@pytest.mark.parametrize("flags", [["--analytic"], ["--json"], ["--analytic", "--json"]])
def test_plan_flags_without_dry_run_are_a_usage_error_and_spend_nothing(flags: list[str], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.pipeline import TreeSynth

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run started")

    monkeypatch.setattr(TreeSynth, "run", never)
    out = tmp_path / "r2"
    code, stdout, stderr = invoke("run", "poems", "--model", "test/fake", "-n", "20", *flags, "--out", str(out))
    assert code == 2 and not stdout
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: ") and "--dry-run" in stderr
    assert all(flag in stderr for flag in flags)
    assert not out.exists()


# issue 15, finding 3: spending guards
def test_a_call_cap_stops_the_run_partial_and_a_higher_cap_resumes_it(tmp_path: Path) -> None:
    out = tmp_path / "capped"
    args = ["run", "poems", "--model", "test/fake", "-q", "-n", "12", "--depth", "2", "--out", str(out)]
    code, stdout, stderr = invoke(*args, "--max-calls", "5")
    assert code == 1 and stdout.startswith("partial: "), (stdout, stderr)
    errors = [line for line in stderr.strip().splitlines() if not line.startswith("warning: ")]  # waste warning
    assert len(errors) == 1 and "--max-calls 5" in errors[0] and "higher" in errors[0]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "partial" and record["llm"]["calls"] == 5  # calls in flight at the cap are kept
    assert "higher --max-calls" in record["resume"] and record["config"]["budget"]["max_calls"] == 5
    code, stdout, stderr = invoke(*args, "--max-calls", "1000")  # the cap is not part of the run's identity
    assert code == 0, stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["counts"]["samples"] == 12 and record["llm"]["calls"] > 5


def test_a_huge_plan_warns_at_dry_run_and_needs_yes_without_a_terminal(tmp_path: Path) -> None:
    code, stdout, stderr = invoke("run", "poems", "--model", "openai/gpt-4o-mini", "-n", "1000000000", "--dry-run",
                                  "--analytic")
    assert code == 0 and "LLM calls" in stdout
    assert stderr.startswith("warning: the plan is ") and "confirmation threshold (10,000 calls or $5)" in stderr
    out = tmp_path / "big"
    code, stdout, stderr = invoke("run", "poems", "--model", "test/fake", "-n", "1000000", "-q", "--out", str(out))
    assert code == 2 and not stdout and not out.exists()
    assert len(stderr.strip().splitlines()) == 1 and "--yes" in stderr and "--max-cost" in stderr
    code, _, stderr = invoke("run", "poems", "--model", "openai/gpt-4o-mini", "-n", "1000000", "-q", "--out", str(out),
                             "--max-cost", "0.5", "--dry-run", "--analytic")  # a cap below the threshold: no warning
    assert code == 0 and "warning" not in stderr


def test_a_huge_plan_asks_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.cli import guard

    monkeypatch.setattr(guard, "on_terminal", lambda: True)
    out = tmp_path / "big"
    result = CliRunner().invoke(app, ["run", "poems", "--model", "test/fake", "-n", "1000000", "-q", "--out", str(out)],
                                input="n\n", env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "Go ahead?" in result.stderr and "not confirmed" in result.stderr
    assert not out.exists()


def test_the_threshold_is_configurable_and_yes_skips_the_question(tmp_path: Path) -> None:
    from treesynth.cli.guard import Spend, above_threshold
    from treesynth.config import RunConfig

    config = RunConfig().with_overrides({"budget.confirm_calls": 10, "budget.confirm_cost_usd": 1.0})
    assert above_threshold(config, Spend(10, 1.0)) is None
    assert "11 LLM calls" in str(above_threshold(config, Spend(11, 0.0)))
    assert "~$1.50" in str(above_threshold(config, Spend(1, 1.5)))
    assert above_threshold(config.with_overrides({"budget.max_calls": 5}), Spend(50, 0.0)) is None
    file = tmp_path / "c.yaml"
    file.write_text(RunConfig().with_overrides({"model.model": "test/fake", "budget.confirm_calls": 3,
                                                "tree.depth": 1, "synthesis.samples": 2}).dump_yaml())
    out = tmp_path / "small"
    code, _, stderr = invoke("run", "poems", "--config", str(file), "-q", "--out", str(out))
    assert code == 2 and "above the confirmation threshold (3 calls" in stderr and not out.exists()
    code, stdout, stderr = invoke("run", "poems", "--config", str(file), "-q", "--out", str(out), "--yes")
    assert code == 0 and stdout.startswith("complete: 2/2"), stderr


@pytest.mark.parametrize("name", ["run", "balance", "compile", "tune", "bench"])
def test_every_spending_command_offers_the_caps_and_yes(name: str) -> None:
    _, stdout, _ = invoke(name, "--help")
    for flag in ("--max-calls", "--max-cost", "--yes"):
        assert (f" {flag} " in stdout) == (flag != "--yes" or name != "balance"), (name, flag)  # balance: no plan


# issue 15, finding 5: visible defaults, the effective config
@pytest.mark.parametrize("name", sorted(OFFERED))
def test_help_shows_the_defaults_of_the_shared_options(name: str) -> None:
    from treesynth.config import EMBEDDED_DEFAULTS, RunConfig

    _, stdout, _ = invoke(*name.split(), "--help")
    flat = " ".join(stdout.split())
    defaults = RunConfig()
    expected = {"--depth": ("tree.depth", defaults.tree.depth), "--width": ("tree.width", defaults.tree.width),
                "--pivots": ("tree.pivots", defaults.tree.pivots),
                "--samples": ("synthesis.samples", defaults.synthesis.samples),
                "--samples-per-call": ("synthesis.samples_per_call", defaults.synthesis.samples_per_call),
                "--concurrency": ("concurrency", defaults.concurrency), "--seed": ("seed", defaults.seed)}
    for flag, (key, value) in expected.items():
        if f" {flag} " not in stdout:
            continue
        embedded = EMBEDDED_DEFAULTS.get(key)
        shown = f"[default: {value}; embedded model: {embedded}]" if embedded not in (None, value) else \
            f"[default: {value}]"
        assert shown in flat, (name, flag, shown)
    assert "[default: 3; embedded model: 2]" in flat or name == "tune"


def test_every_option_of_every_command_shows_its_default() -> None:
    root: Any = typer.main.get_command(app)
    stack: list[tuple[str, Any]] = list(root.commands.items())
    missing, checked = [], 0
    while stack:
        name, command = stack.pop()
        if hasattr(command, "commands"):  # a group
            stack += [(f"{name} {sub}", cmd) for sub, cmd in command.commands.items()]
            continue
        for param in command.params:
            if param.param_type_name != "option" or param.is_flag or param.required or param.name == "help":
                continue
            checked += 1
            if param.default is None and "default" not in (param.help or "").casefold():
                missing.append(f"{name} {param.opts[0]}")
    assert not missing and checked > 50, missing


def test_config_show_prints_the_effective_config_as_yaml(tmp_path: Path) -> None:
    from treesynth.config import RunConfig

    code, stdout, stderr = invoke("config", "show", "--model", "test/fake", "--depth", "2", "--max-calls", "7")
    assert code == 0, stderr
    shown = RunConfig.parse(yaml.safe_load(stdout))
    assert shown == RunConfig.defaults_for("test/fake").with_overrides({"tree.depth": 2, "budget.max_calls": 7})
    file = tmp_path / "c.yaml"
    file.write_text(stdout)
    code, again, _ = invoke("config", "show", "--config", str(file), "--seed", "4")
    assert code == 0 and RunConfig.parse(yaml.safe_load(again)) == shown.with_overrides({"seed": 4})
    code, _, stderr = invoke("config", "show", "--model", "test/fake", "--width", "1")
    assert code == 2 and stderr.startswith("error: ") and "tree.width" in stderr


def test_dry_run_json_includes_the_config_it_planned() -> None:
    code, stdout, _ = invoke("run", "poems", "--model", "test/fake", "-n", "30", "--depth", "2", "--dry-run",
                             "--analytic", "--json")
    assert code == 0
    plan = json.loads(stdout)
    assert plan["config"]["synthesis"]["samples"] == 30 and plan["config"]["tree"]["depth"] == 2
    assert plan["config"]["model"]["model"] == "test/fake" and plan["warning"] is None and plan["calls"] > 0


def test_version_and_short_help_everywhere() -> None:
    from treesynth import __version__

    code, stdout, _ = invoke("--version")
    assert code == 0 and stdout.strip() == f"treesynth {__version__}"
    for command in ([], ["run"], ["tree", "show"], ["config", "show"], ["bench"]):
        code, short, _ = invoke(*command, "-h")
        _, long, _ = invoke(*command, "--help")
        assert code == 0 and short == long and "Usage:" in short, command


# issue 15, finding 10 (CLI): roles, help layout, Optuna's log lines
def test_role_model_help_and_error_name_the_same_roles(tmp_path: Path) -> None:
    from treesynth.config import ROLES

    assert "routing" in ROLES and len(ROLES) == 5
    _, stdout, _ = invoke("run", "--help")
    assert f"({', '.join(ROLES)})" in " ".join(stdout.split())
    with pytest.raises(ConfigError, match="roles: pivots, criterion, coverage, leaf, routing"):
        RunOptions(model="test/fake", role_models=["router=test/fake"]).to_config()
    assert RunOptions(model="test/fake", role_models=["routing=test/fake"]).to_config().model.model_for("routing")


def test_help_paragraphs_are_not_broken_mid_sentence() -> None:
    _, stdout, _ = invoke("balance", "--help")  # 200 columns: room for the whole paragraph on one line
    assert "routing.jsonl (where every input line went), unrouted.jsonl, report.md" in stdout
    _, stdout, _ = invoke("run", "--help")
    assert "asks first on a terminal and needs --yes otherwise" in stdout


def test_tune_prints_no_optuna_log_lines(tmp_path: Path) -> None:
    from test_run_e2e import treesynth

    done = treesynth("tune", "poems", "--model", "test/fake", "-n", "4", "--trials", "1", "--out", str(tmp_path / "t"))
    assert done.returncode == 0, done.stderr
    assert "[I " not in done.stderr and "[I " not in done.stdout and done.stdout.startswith("study treesynth-")


def test_a_cap_is_not_part_of_the_study_identity() -> None:
    from treesynth.config import RunConfig
    from treesynth.models import Task
    from treesynth.optimizers.tune import TuneOptions, default_study_name

    task, base = Task(description="poems"), RunConfig.defaults_for("test/fake")
    capped = base.with_overrides({"budget.max_calls": 9, "budget.max_cost_usd": 1.0})
    assert default_study_name(task, base, TuneOptions()) == default_study_name(task, capped, TuneOptions())
