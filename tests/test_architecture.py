"""The layering rule and the package mapping, enforced."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lower number = lower layer; a module may import only from its own layer or below
LAYERS: dict[str, int] = {
    "treesynth.errors": 0,
    "treesynth.models": 0,
    "treesynth.io": 0,
    "treesynth.wording": 0,
    "treesynth.identity": 0,
    "treesynth.rundir": 0,
    "treesynth.redact": 0,
    "treesynth.config": 1,
    "treesynth.aio": 1,
    "treesynth.gate": 1,
    "treesynth.neardup": 1,
    "treesynth.signatures": 2,
    "treesynth.testing": 2,
    "treesynth.providers": 2,
    "treesynth.store": 3,
    "treesynth.record": 3,
    "treesynth.summary": 3,
    "treesynth.tree": 3,
    "treesynth.synthesis": 3,
    "treesynth.metrics": 3,
    "treesynth.viz": 3,
    "treesynth.executors": 4,  # where leaf calls run: this process or Ray workers (the kernel opens one per run)
    "treesynth.kernel": 4,   # the run kernel: one store, one gateway, one run.json per run
    "treesynth.program": 4,
    "treesynth.pipeline": 5,
    "treesynth.planning": 5,
    "treesynth.balance": 5,
    "treesynth.baselines": 5,
    "treesynth.optimizers": 6,
    "treesynth.sweep": 6,
    "treesynth.export": 6,   # reads run directories (store, record, metrics, viz); nothing imports it but the CLI
    "treesynth.cli": 7,
    "treesynth.__main__": 7,
    "treesynth": 7,
}
SOURCES = {"treesynth": ROOT / "treesynth", "treesynth.signatures": ROOT / "signatures",
           "treesynth.optimizers": ROOT / "optimizers"}


def layer_of(module: str) -> int:
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)
    return LAYERS[best]


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for file in folder.rglob("*.py"):
            rel = file.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "treesynth" and parts[:1] in (["signatures"], ["optimizers"]):
                continue
            found[name] = file
    return found


def imports(file: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def test_layers_point_one_way() -> None:
    violations = []
    for name, file in modules().items():
        for target in imports(file):
            if target.split(".")[0] in ("signatures", "optimizers"):
                violations.append(f"{name} imports bare {target}")
            if target.startswith("treesynth") and layer_of(target) > layer_of(name):
                violations.append(f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})")
    assert not violations, "\n".join(violations)


def test_library_never_configures_dspy_globally() -> None:
    offenders = [name for name, file in modules().items() if "dspy.configure(" in file.read_text()]
    assert not offenders


def test_every_package_is_listed_and_in_the_wheel(tmp_path: Path) -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {name for name, file in modules().items() if file.name == "__init__.py"}
    assert on_disk == listed, f"missing from pyproject: {on_disk - listed}; stale: {listed - on_disk}"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("treesynth-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in listed:
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert "treesynth/signatures/criterion.py" in names and "treesynth/py.typed" in names


MAX_MODULE_LINES = 400
MAX_PARAMETERS = 8
"""Parameters of one function, not counting ``self``/``cls``; ``*args`` and ``**kwargs`` count as one each."""


def test_no_module_is_over_the_line_limit() -> None:
    long = {name: n for name, file in modules().items() if (n := len(file.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


def _parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
    return count - (bool(names) and names[0] in ("self", "cls"))


def test_no_function_takes_more_than_eight_parameters() -> None:
    crowded = [f"{name}.{node.name} ({_parameter_count(node)})"
               for name, file in modules().items() if not name.startswith("treesynth.cli")
               for node in ast.walk(ast.parse(file.read_text()))
               if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _parameter_count(node) > MAX_PARAMETERS]
    assert not crowded, f"functions over {MAX_PARAMETERS} parameters (group them in a frozen dataclass): {crowded}"
