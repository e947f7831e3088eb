"""The command that reproduces a run, and the files it reads (written beside the exported data).

Built from ``run.json``'s ``task`` and ``config`` only: ``treesynth_config.yaml`` is the full configuration
(``--config`` reads it back), ``treesynth_task.yaml`` the task when it is more than a sentence, and for a
baseline bench cell ``treesynth_sweep.yaml`` a one-cell sweep.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from treesynth.export.source import RunSource, synthesis_model, template_names

CONFIG_FILE = "treesynth_config.yaml"
TASK_FILE = "treesynth_task.yaml"
SWEEP_FILE = "treesynth_sweep.yaml"


@dataclass(frozen=True)
class Reproduction:
    """The shell command, and the files (name -> text) it reads from the export directory."""

    command: str
    files: dict[str, str] = field(default_factory=dict)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _task_ref(task: dict[str, Any], files: dict[str, str]) -> str:
    """The task sentence, or the task file (added to ``files``) when it has fields or a first split."""
    if task.get("fields") or task.get("first_split"):
        files[TASK_FILE] = _dump({k: v for k, v in task.items() if v})
        return TASK_FILE
    return str(task.get("description", ""))


def reproduction(source: RunSource) -> Reproduction:
    """How to run ``source`` again: same task, same configuration (hence the same seeds), a fresh directory."""
    files = {CONFIG_FILE: _dump(source.config)}
    out = shlex.quote(source.path.resolve().name)
    if source.kind == "balance":
        given = source.run.get("input") or {}
        target = (source.run.get("counts") or {}).get("target", 0)
        spec = str(given.get("field") or "")
        names = template_names(spec) if spec else []
        chosen = f" --field {shlex.quote(spec)}" if names and all(n.isidentifier() for n in names) else ""
        command = (f"treesynth balance {shlex.quote(str(given.get('path', 'DATA.jsonl')))} --task "
                   f"{shlex.quote(_task_ref(source.task, files))}{chosen} --total {target} --config {CONFIG_FILE} "
                   f"--out {out}")
    elif source.kind == "baseline":
        config = {k: v for k, v in source.config.items() if k != "seed"}
        files[SWEEP_FILE] = _dump({
            "task": _task_ref(source.task, files),
            "methods": [source.run.get("method")], "models": [synthesis_model(source.config)],
            "sizes": [(source.run.get("counts") or {}).get("target", 0)], "seeds": [source.config.get("seed", 0)],
            "config": config})
        command = f"treesynth bench {SWEEP_FILE} --out {out}-sweep"
    else:
        command = f"treesynth run {shlex.quote(_task_ref(source.task, files))} --config {CONFIG_FILE} --out {out}"
    return Reproduction(command=command, files=files)
