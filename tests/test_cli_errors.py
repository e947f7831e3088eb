"""Bad input: one-line error naming the fix, exit code 2, existing files untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_run_e2e import treesynth


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_usage_error(done: object, *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)  # type: ignore[attr-defined]
    lines = done.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in done.stderr  # type: ignore[attr-defined]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["   "], ["task", "describe"]),
        (["--depth", "0"], ["tree.depth", "greater than or equal to 1"]),
        (["--depth", "-2"], ["tree.depth"]),
        (["--width", "1"], ["tree.width"]),
        (["--model", "nosuchprovider/some-model"], ["unknown model provider", "provider/model"]),
        (["--model", "gpt4"], ["provider prefix"]),
        (["--model", "test/other"], ["test/fake"]),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    task = args[0] if args[0].strip() == "" else "poems"
    rest = args[1:] if args[0].strip() == "" else args
    done = treesynth("run", task, "--model", "test/fake", *rest, "--out", str(tmp_path / "o"), "-q")
    assert_usage_error(done, *needles)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "poems", "--depth", "abc"], ["error: Invalid value for '--depth'", "treesynth run --help'"]),
        (["tree", "show", "X", "--format", "bogus"], ["error: Invalid value for '--format'", "bogus",
                                                      "treesynth tree show --help'"]),
        (["run", "poems", "--no-such-flag"], ["error: No such option: --no-such-flag", "--help"]),
        (["nosuchcommand"], ["error: No such command 'nosuchcommand'", "treesynth --help'"]),
    ],
)
def test_click_usage_errors_are_one_line(args: list[str], needles: list[str]) -> None:
    done = treesynth(*args)
    assert_usage_error(done, *needles)
    assert "╭" not in done.stderr and not done.stdout


def test_missing_key_and_unreachable_api_base(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    no_key = treesynth("run", "poems", "--model", "openai/gpt-4o-mini", "-q", "--out", str(tmp_path / "a"), env=env)
    assert_usage_error(no_key, "OPENAI_API_KEY", "environment")
    closed_port = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
    unreachable = treesynth("run", "poems", "--model", "openai/gpt-4o-mini", "--api-base", closed_port, "-q",
                            "--out", str(tmp_path / "b"), env={**env, "OPENAI_API_KEY": "test"})
    assert unreachable.returncode == 1
    line = unreachable.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot reach") and closed_port in line and "resume" in line


def test_malformed_yaml_task_and_config(tmp_path: Path) -> None:
    bad = tmp_path / "task.yaml"
    bad.write_text("description: [unclosed\n")
    assert_usage_error(treesynth("run", str(bad), "--model", "test/fake", "-q", "--out", str(tmp_path / "o")),
                       "malformed YAML", "line")
    wrong_key = tmp_path / "task2.yaml"
    wrong_key.write_text("description: poems\nfeilds: {a: b}\n")
    assert_usage_error(treesynth("run", str(wrong_key), "--model", "test/fake", "-q"), "feilds")
    config = tmp_path / "c.yaml"
    config.write_text("tree:\n  widht: 3\n")
    assert_usage_error(treesynth("run", "poems", "--config", str(config), "--model", "test/fake", "-q"),
                       "tree.widht")


def test_out_dir_protection(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert_usage_error(treesynth("run", "poems", "--model", "test/fake", "-q", "--out", str(foreign)),
                       "not empty")
    assert (foreign / "notes.txt").read_text() == "keep me"

    run = tmp_path / "run"
    assert treesynth("run", "poems", "--model", "test/fake", "-q", "-n", "5", "--depth", "1",
                     "--out", str(run)).returncode == 0
    before = snapshot(run)
    assert_usage_error(treesynth("run", "limericks", "--model", "test/fake", "-q", "-n", "5", "--depth", "1",
                                 "--out", str(run)), "different task")
    assert_usage_error(treesynth("run", "poems", "--model", "test/fake", "-q", "-n", "5", "--depth", "2",
                                 "--out", str(run)), "holds a run with tree.depth 1, not 2", "or --depth 1")
    after = snapshot(run)
    assert {k: v for k, v in after.items() if not k.startswith("treesynth.db")} == \
        {k: v for k, v in before.items() if not k.startswith("treesynth.db")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    done = treesynth("run", "poems", "--model", "test/fake", "-q", "-n", "6", "--depth", "1", "--out", str(run))
    assert done.returncode == 0, done.stderr
    return run


@pytest.mark.parametrize(
    ("task", "extra", "needles"),
    [
        ("   ", [], ["task", "describe"]),
        ("poems", ["--depth", "0"], ["tree.depth"]),
        ("poems", ["--width", "1"], ["tree.width"]),
        ("poems", ["--model", "nosuchprovider/some-model"], ["unknown model provider"]),
        ("poems", ["--config", "{bad_yaml}"], ["malformed YAML"]),
        ("{bad_yaml}", [], ["malformed YAML"]),
    ],
)
def test_bad_input_leaves_a_finished_run_byte_identical(finished_run: Path, tmp_path: Path, task: str,
                                                        extra: list[str], needles: list[str]) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tree: [unclosed\n")
    before = snapshot(finished_run)
    assert {"treesynth.db", "run.json", "samples.jsonl", "tree.json"} <= set(before)
    # the finished run's own flags first: a later repeated flag wins
    done = treesynth("run", task.format(bad_yaml=bad_yaml), "--model", "test/fake", "-q", "-n", "6", "--depth", "1",
                     "--out", str(finished_run), *(a.format(bad_yaml=bad_yaml) for a in extra))
    assert_usage_error(done, *needles)
    assert snapshot(finished_run) == before  # every byte, the database (and any -wal/-shm) included


def test_unwritable_out_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses even root
        target = Path("/sys/treesynth-test-out")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "x"
    assert_usage_error(treesynth("run", "poems", "--model", "test/fake", "-q", "--out", str(target)),
                       "not writable")


def test_unwritable_out_dir_as_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("data")
    assert_usage_error(treesynth("run", "poems", "--model", "test/fake", "-q", "--out", str(target)), "is a file")
    assert target.read_text() == "data"


def test_tree_show_on_missing_and_broken_files(tmp_path: Path) -> None:
    assert_usage_error(treesynth("tree", "show", str(tmp_path / "nope")), "does not exist")
    broken = tmp_path / "tree.json"
    broken.write_text("{oops")
    assert_usage_error(treesynth("tree", "show", str(broken)), "not valid JSON")


def test_help_lists_commands() -> None:
    done = treesynth("--help")
    assert done.returncode == 0 and "run" in done.stdout and "tree" in done.stdout
    bare = treesynth()  # no arguments: the help, as before
    assert bare.returncode == 2 and "Usage:" in bare.stdout and "Commands" in bare.stdout and not bare.stderr
    done = treesynth("run", "--help")
    for flag in ("--model", "--api-base", "--depth", "--width", "--pivots", "--samples", "--samples-per-call",
                 "--concurrency", "--seed", "--out", "--config"):
        assert flag in done.stdout


def test_no_model_and_no_embedded_extra_names_both_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.cli.options import RunOptions
    from treesynth.errors import ConfigError
    from treesynth.providers import factory

    monkeypatch.setattr(factory, "embedded_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--model provider/model.*treesynth\[local\]"):
        RunOptions().to_config()
    assert RunOptions(model="test/fake").to_config().tree.depth == 3  # explicit models keep the normal defaults


def test_explicit_embedded_model_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.cli.options import RunOptions
    from treesynth.errors import ConfigError
    from treesynth.providers import factory
    from treesynth.providers.local import LOCAL_EXTRA_HINT

    monkeypatch.setattr(factory, "local_model_available", lambda name: False)
    config = RunOptions(model="local/qwen2.5-coder-1.5b-instruct").to_config()
    with pytest.raises(ConfigError) as caught:
        factory.make_role_lms(config.model)
    assert str(caught.value) == LOCAL_EXTRA_HINT and "no --model given" not in str(caught.value)
    tiny = RunOptions(model="local/gemma-3-270m").to_config()
    with pytest.raises(ConfigError, match=r"treesynth\[tiny\]"):
        factory.make_role_lms(tiny.model)


def test_embedded_model_gets_small_defaults_under_explicit_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.cli.options import RunOptions
    from treesynth.providers import factory

    monkeypatch.setattr(factory, "embedded_available", lambda: True)
    config = RunOptions(depth=3).to_config()
    assert config.model.model == "local/qwen2.5-coder-1.5b-instruct"
    assert config.tree.depth == 3 and config.tree.width == 4 and config.synthesis.samples == 12
