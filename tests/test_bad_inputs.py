"""The bad-input catalogue (issue 14): every case exits 2 with one ``error: ...`` line naming the fix, no
traceback, and leaves every existing file -- a finished run, the inputs -- byte-identical.

Inputs that are not bad (a byte-order mark, CRLF line ends, a 50 MB line, a run directory as ``--tree``) are
in :func:`test_awkward_but_valid_input_works`: they must just work, and leave their inputs untouched too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_run_e2e import treesynth

FAKE = ("-m", "test/fake")
RUN = ("run", "poems", *FAKE, "-q", "-n", "6", "--depth", "1")  # the finished run's own flags
BALANCE = ("balance", "--task", "poems", *FAKE, "--depth", "1", "--per-leaf", "2")
EVAL = ("eval", "-e", "lexical", "--no-plots")
TUNE = ("tune", "poems", *FAKE, "-n", "4", "--trials", "1")


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (``{name}`` names a file of the world) and words the error must hold."""

    argv: tuple[str, ...]
    needles: tuple[str, ...]


CASES: dict[str, Case] = {
    # CLI values out of range or of the wrong type
    "samples-zero": Case((*RUN, "-n", "0", "--out", "{run}"), ("synthesis.samples", "greater than or equal to 1")),
    "concurrency-zero": Case((*RUN, "--concurrency", "0", "--out", "{run}"), ("concurrency",)),
    "seed-negative": Case((*RUN, "--seed", "-1", "--out", "{run}"), ("seed", "greater than or equal to 0")),
    "max-calls-zero": Case((*RUN, "--max-calls", "0", "--out", "{run}"), ("max_calls",)),
    "max-cost-negative": Case((*RUN, "--max-cost", "-1", "--out", "{run}"), ("max_cost_usd", "greater than 0")),
    "depth-not-a-number": Case((*RUN, "--depth", "two", "--out", "{run}"), ("'--depth'", "--help")),
    "temperature-not-a-number": Case((*RUN, "--role-temperature", "leaf=hot", "--out", "{run}"),
                                     ("leaf.temperature", "valid number")),
    "temperature-out-of-range": Case((*RUN, "--role-temperature", "leaf=9", "--out", "{run}"),
                                     ("leaf.temperature", "less than or equal to 2")),
    "unknown-role": Case((*RUN, "--role-model", "nobody=test/fake", "--out", "{run}"), ("unknown role", "leaf")),
    "structured-output-bogus": Case((*RUN, "--structured-output", "bogus", "--out", "{run}"),
                                    ("structured_output", "json_schema")),
    "balance-batch-size-zero": Case((*BALANCE, "{good}", "--batch-size", "0", "--out", "{new}"),
                                    ("'--batch-size'", "greater than or equal to 1")),
    "eval-plot-points-one": Case((*EVAL, "{good}", "--max-plot-points", "1", "--out", "{new}"),
                                 ("--max-plot-points", "2")),
    # YAML config and task files
    "config-tabs": Case((*RUN, "--config", "{tabs_yaml}", "--out", "{run}"), ("tabs.yaml:2", "spaces, not tabs")),
    "config-duplicate-key": Case((*RUN, "--config", "{dup_yaml}", "--out", "{run}"),
                                 ("dup.yaml:3", "duplicate key 'depth'", "line 2")),
    "config-duplicate-key-inline": Case((*RUN, "--config", "{dup_inline_yaml}", "--out", "{run}"),
                                        ("duplicate key 'x'",)),
    "config-unknown-key": Case((*RUN, "--config", "{unknown_yaml}", "--out", "{run}"), ("widht",)),
    "config-wrong-type": Case((*RUN, "--config", "{wrongtype_yaml}", "--out", "{run}"),
                              ("tree.depth", "valid integer")),
    "task-no-description": Case(("run", "{nodesc_yaml}", *FAKE, "-q", "--out", "{run}"), ("description",)),
    "task-empty-description": Case(("run", "{emptydesc_yaml}", *FAKE, "-q", "--out", "{run}"),
                                   ("description", "describe the data")),
    "task-duplicate-key": Case(("run", "{duptask_yaml}", *FAKE, "-q", "--out", "{run}"),
                               ("duplicate key 'description'",)),
    # datasets
    "balance-not-utf8": Case((*BALANCE, "{latin_jsonl}", "--out", "{new}"), ("latin.jsonl:2", "UTF-8", "iconv")),
    "eval-not-utf8": Case((*EVAL, "{latin_jsonl}", "--out", "{new}"), ("latin.jsonl:2", "re-encode")),
    "balance-nested-field": Case((*BALANCE, "{nested_jsonl}", "--out", "{new}"), ("an object", "--field")),
    "eval-nested-field": Case((*EVAL, "{nested_jsonl}", "--out", "{new}"), ("an object", "flatten")),
    "balance-empty-file": Case((*BALANCE, "{empty_jsonl}", "--out", "{new}"), ("empty file",)),
    "eval-empty-file": Case((*EVAL, "{empty_jsonl}", "--out", "{new}"), ("empty file",)),
    "balance-missing-field": Case((*BALANCE, "{good}", "--field", "question", "--out", "{new}"),
                                  ("missing field 'question'", "fields: id, text")),
    "eval-missing-field": Case((*EVAL, "{good}", "--field", "question", "--out", "{new}"),
                               ("missing field 'question'",)),
    "balance-duplicate-ids": Case((*BALANCE, "{dupid_jsonl}", "--out", "{new}"),
                                  ("dupid.jsonl:3", "repeats line 1", "unique id")),
    # run directories
    "run-of-another-task": Case(("run", "limericks", *RUN[2:], "--out", "{run}"), ("different task",)),
    "run-of-another-config": Case((*RUN, "--width", "3", "--out", "{run}"), ("tree.width 4, not 3",)),
    "corrupt-store": Case((*RUN, "--out", "{corrupt}"), ("not an SQLite database", "new --out")),
    "truncated-store": Case((*RUN, "--out", "{truncated}"), ("not a usable run store", "new --out")),
    "out-not-a-run": Case((*RUN, "--out", "{notrun}"), ("holds no treesynth run",)),
    "tree-show-not-a-run": Case(("tree", "show", "{notrun}"), ("tree.json does not exist", "run directory")),
    "balance-tree-not-a-run": Case((*BALANCE, "{good}", "--tree", "{notrun}", "--out", "{new}"),
                                   ("without a tree.json", "run directory")),
    "balance-tree-null-node": Case((*BALANCE, "{good}", "--tree", "{null_tree}", "--out", "{new}"),
                                   ("root.children.0", "unedited")),
    "balance-tree-duplicate-node-ids": Case((*BALANCE, "{good}", "--tree", "{dupnode_tree}", "--out", "{new}"),
                                            ("two nodes with the id", "unedited")),
    "balance-tree-trailing-comma": Case((*BALANCE, "{good}", "--tree", "{comma_tree}", "--out", "{new}"),
                                        ("trailing comma",)),
    "tree-show-null-node": Case(("tree", "show", "{null_tree}"), ("root.children.0 is null", "treesynth")),
    "tree-show-children-not-a-list": Case(("tree", "show", "{number_tree}", "-f", "html", "-o", "{new_html}"),
                                          ("root.children is a number",)),
    "tree-show-over-its-own-tree": Case(("tree", "show", "{run}", "-f", "html", "-o", "{run_tree}"),
                                        ("would overwrite", "another file")),
    # read-only output directories
    "run-read-only-out": Case((*RUN, "--out", "{ro}"), ("not writable", "writable directory")),
    "balance-read-only-out": Case((*BALANCE, "{good}", "--out", "{ro}"), ("not writable",)),
    "eval-read-only-out": Case((*EVAL, "{good}", "--out", "{ro}"), ("not writable",)),
    "tune-read-only-out": Case((*TUNE, "--out", "{ro}"), ("not writable",)),
    "tree-show-read-only-output": Case(("tree", "show", "{run}", "-o", "{ro_html}"), ("cannot write --output",)),
    # compiled programs for other signatures
    "program-other-fields": Case((*RUN, "--program", "{prog_other}", "--out", "{run}"),
                                 ("does not fit", "recompile it")),
    "program-other-signature-version": Case((*RUN, "--program", "{prog_oldsig}", "--out", "{run}"),
                                            ("signature version 0", "recompile it")),
    "program-not-a-program": Case((*RUN, "--program", "{good}", "--out", "{run}"), ("not valid JSON", "compile")),
    # tune search spaces
    "space-empty-list": Case((*TUNE, "--space", "{space_empty}", "--out", "{new}"), ("depth", "[low, high]")),
    "space-low-above-high": Case((*TUNE, "--space", "{space_inverted}", "--out", "{new}"), ("above high",)),
    "space-zero-step": Case((*TUNE, "--space", "{space_zero_step}", "--out", "{new}"), ("positive step",)),
    "space-outside-the-config": Case((*TUNE, "--space", "{space_outside}", "--out", "{new}"),
                                     ("depth: 0 is out of range", "narrow the range")),
}


def digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, hashed (the tree before and after a case)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def read_only_dir(base: Path) -> Iterator[Path]:
    """An existing directory nothing can be written into: a read-only tmpfs as root, else mode 0500."""
    path = base / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        yield path
        path.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                             capture_output=True, check=False).returncode == 0
    if not mounted:  # root without CAP_SYS_ADMIN: sysfs refuses even root
        yield Path("/sys/treesynth-bad-input")
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def _write_inputs(root: Path, run: Path) -> dict[str, Path]:
    """The bad (and awkward) input files, each named for the ``{placeholder}`` of the cases."""
    texts = {
        "tabs_yaml": ("tabs.yaml", "tree:\n\tdepth: 2\n"),
        "dup_yaml": ("dup.yaml", "tree:\n  depth: 2\n  depth: 3\n"),
        "dup_inline_yaml": ("dup-inline.yaml", "model:\n  roles: {leaf: {temperature: 1}}\na: {x: 1, x: 2}\n"),
        "unknown_yaml": ("unknown.yaml", "tree:\n  widht: 3\n"),
        "wrongtype_yaml": ("wrongtype.yaml", "tree:\n  depth: two\n"),
        "nodesc_yaml": ("nodesc.yaml", "fields: {topic: the poem's topic}\n"),
        "emptydesc_yaml": ("emptydesc.yaml", "description: '  '\n"),
        "duptask_yaml": ("duptask.yaml", "description: poems\ndescription: odes\n"),
        "good": ("good.jsonl", '{"id": 1, "text": "a poem about cats"}\n{"id": 2, "text": "a poem about dogs"}\n'),
        "nested_jsonl": ("nested.jsonl", '{"text": {"title": "cats", "body": "a poem"}}\n'),
        "empty_jsonl": ("empty.jsonl", ""),
        "dupid_jsonl": ("dupid.jsonl", '{"id": "a", "text": "cats"}\n{"id": "b", "text": "dogs"}\n'
                                       '{"id": "a", "text": "owls"}\n'),
        "space_empty": ("space-empty.yaml", "depth: []\n"),
        "space_inverted": ("space-inverted.yaml", "depth: [3, 2]\n"),
        "space_zero_step": ("space-zero-step.yaml", "leaf_temperature: [0.5, 1.0, 0]\n"),
        "space_outside": ("space-outside.yaml", "depth: [0, 2]\n"),
    }
    paths = {key: root / name for key, (name, _) in texts.items()}
    for key, (_, text) in texts.items():
        paths[key].write_text(text, encoding="utf-8")
    paths["latin_jsonl"] = root / "latin.jsonl"
    paths["latin_jsonl"].write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')  # Latin-1, not UTF-8
    tree = json.loads((run / "tree.json").read_text())
    edits = {"null_tree": lambda t: t["root"]["children"].__setitem__(0, None),
             "number_tree": lambda t: t["root"].__setitem__("children", 5),
             "dupnode_tree": lambda t: t["root"]["children"][1].__setitem__("id", t["root"]["children"][0]["id"])}
    for key, edit in edits.items():
        edited = json.loads(json.dumps(tree))
        edit(edited)
        paths[key] = root / f"{key}.json"
        paths[key].write_text(json.dumps(edited, indent=2))
    paths["comma_tree"] = root / "comma_tree.json"
    paths["comma_tree"].write_text((run / "tree.json").read_text().rstrip()[:-1] + ",}")
    return paths


def _write_programs(root: Path) -> dict[str, Path]:
    from treesynth.optimizers.program_io import save_program
    from treesynth.program import TreeSynthProgram

    document = json.loads(save_program(TreeSynthProgram(), root / "program.json").read_text())
    other = json.loads(json.dumps(document))
    name = next(iter(other["predictors"]))
    other["predictors"][name]["inputs"] = ["some_other_input"]
    old = {**document, "signature_version": "0"}
    paths = {"prog_other": root / "program-other.json", "prog_oldsig": root / "program-old.json"}
    paths["prog_other"].write_text(json.dumps(other))
    paths["prog_oldsig"].write_text(json.dumps(old))
    return paths


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A finished run, copies of it with a broken store, a directory that is no run, and every input file."""
    root = tmp_path_factory.mktemp("world")
    run = root / "run"
    done = treesynth(*RUN, "--out", str(run))
    assert done.returncode == 0, done.stderr
    paths = {"root": root, "run": run, "run_tree": run / "tree.json"}
    for name, damage in {"corrupt": lambda db: db.write_bytes(b"not a database " * 400),
                         "truncated": lambda db: db.write_bytes(db.read_bytes()[:5000])}.items():
        shutil.copytree(run, root / name)
        damage(root / name / "treesynth.db")
        paths[name] = root / name
    paths["notrun"] = root / "notrun"
    paths["notrun"].mkdir()
    (paths["notrun"] / "notes.txt").write_text("not a run\n")
    paths |= _write_inputs(root, run) | _write_programs(root)
    with read_only_dir(root) as ro:
        paths |= {"ro": ro, "ro_html": ro / "tree.html"}
        yield paths


def _argv(argv: tuple[str, ...], places: dict[str, Path]) -> list[str]:
    return [arg.format(**{key: str(path) for key, path in places.items()}) for arg in argv]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_no_file(world: dict[str, Path], tmp_path: Path,
                                                          case: Case) -> None:
    places = {**world, "new": tmp_path / "out", "new_html": tmp_path / "tree.html"}
    before = digest(world["root"])
    done = treesynth(*_argv(case.argv, places))
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    for needle in case.needles:
        assert needle in lines[0], lines[0]
    assert digest(world["root"]) == before  # every byte of every file, and no file added
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing written for a refused command


def test_the_catalogue_covers_thirty_cases() -> None:
    assert len(CASES) >= 30


def _big_line(path: Path) -> Path:
    path.write_text(json.dumps({"id": 1, "text": ("abcdefghij" * 100 + " ") * 50_000}) + "\n" +
                    json.dumps({"id": 2, "text": "a short poem"}) + "\n", encoding="utf-8")
    assert path.stat().st_size > 50_000_000
    return path


@pytest.mark.parametrize("kind", ["bom", "crlf", "big-line", "eval-duplicate-ids", "tree-from-a-run-directory"])
def test_awkward_but_valid_input_works(world: dict[str, Path], tmp_path: Path, kind: str) -> None:
    records = '{"id": 1, "text": "a poem about cats"}\n{"id": 2, "text": "a poem about dogs"}\n'
    data = tmp_path / "data.jsonl"
    argv: tuple[str, ...] = (*BALANCE, str(data), "--out", str(tmp_path / "out"))
    if kind == "bom":
        data.write_bytes(b"\xef\xbb\xbf" + records.encode())
    elif kind == "crlf":
        data.write_bytes(records.replace("\n", "\r\n").encode())
    elif kind == "big-line":
        _big_line(data)
        argv = (*EVAL, str(data), "--out", str(tmp_path / "out"))
    elif kind == "eval-duplicate-ids":
        data.write_text(records.replace('"id": 2', '"id": 1'))
        argv = (*EVAL, str(data), "--out", str(tmp_path / "out"))
    else:
        data.write_text(records)
        argv = (*argv, "--tree", str(world["run"]))
    data_before, world_before = data.read_bytes(), digest(world["root"])
    done = treesynth(*argv)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    out = tmp_path / "out"
    if argv[0] == "balance":
        kept = [json.loads(line) for line in (out / "balanced.jsonl").read_text().splitlines()]
        assert {r["text"] for r in kept if r["origin"] == "original"} <= {"a poem about cats", "a poem about dogs"}
        assert any(r["origin"] == "original" for r in kept)
    else:
        assert json.loads((out / "metrics.json").read_text())
    assert data.read_bytes() == data_before and digest(world["root"]) == world_before
