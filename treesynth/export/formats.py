"""Training formats: a sample's content mapped onto instruction/input/output, then laid out per format.

``--map question=instruction,answer=output`` names where each field goes (targets: ``system``,
``instruction``, ``input``, ``output``). Without it, with several fields the first is the instruction, the last
the output and any in between the input; a single field (a text sample's ``text``, a balance run's one routed
field) is the output, and the instruction is the task description. Several fields mapped to one target are
joined as ``name: value`` lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from treesynth.errors import ConfigError

FORMATS = ("raw", "messages", "prompt-completion", "sharegpt", "alpaca")
"""``raw``: the content columns as they are; the others are the layouts people train with."""
TARGETS = ("system", "instruction", "input", "output")


@dataclass(frozen=True)
class Parts:
    """One sample as a training pair (``system`` is ``None`` when no field maps to it)."""

    system: str | None
    instruction: str
    input: str
    output: str

    @property
    def prompt(self) -> str:
        """The user turn: the instruction, then the input after a blank line when there is one."""
        return "\n\n".join(part for part in (self.instruction, self.input) if part)


def parse_formats(names: Sequence[str] | None) -> list[str]:
    """The formats asked for (all by default), each once, in :data:`FORMATS` order."""
    if not names:
        return list(FORMATS)
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown --format {unknown[0]!r}; use one of {', '.join(FORMATS)}")
    return [name for name in FORMATS if name in names]


def parse_map(spec: str | None, fields: Sequence[str], available: Sequence[str]) -> dict[str, str]:
    """``field=target`` pairs from ``--map`` (or the default mapping of ``fields``); field -> target.

    Raises:
        ConfigError: a malformed pair, a field the samples lack, or an unknown target.
    """
    if not spec:
        return default_map(fields)
    mapping: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, target = (s.strip() for s in pair.partition("="))
        if not sep or not name or not target:
            raise ConfigError(f"--map {pair!r} is not FIELD=TARGET; e.g. --map question=instruction,answer=output")
        if name not in available:
            raise ConfigError(f"--map names field {name!r}, which the samples lack; fields: {', '.join(available)}")
        if target not in TARGETS:
            raise ConfigError(f"--map target {target!r} is unknown; use {', '.join(TARGETS)}")
        mapping[name] = target
    if not mapping:
        raise ConfigError("--map is empty; e.g. --map question=instruction,answer=output")
    if "output" not in mapping.values():
        raise ConfigError("--map maps no field to output; e.g. --map question=instruction,answer=output")
    return mapping


def default_map(fields: Sequence[str]) -> dict[str, str]:
    """One field: the output. Several: first the instruction, last the output, the rest the input."""
    if len(fields) == 1:
        return {fields[0]: "output"}
    return {name: "instruction" if i == 0 else "output" if i == len(fields) - 1 else "input"
            for i, name in enumerate(fields)}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def to_parts(content: Mapping[str, Any], mapping: Mapping[str, str], task: str) -> Parts:
    """The training pair of one sample; the instruction falls back to ``task`` when no field maps to it."""
    chosen: dict[str, list[tuple[str, str]]] = {target: [] for target in TARGETS}
    for name, target in mapping.items():
        chosen[target].append((name, _text(content.get(name))))

    def joined(target: str) -> str:
        items = chosen[target]
        return items[0][1] if len(items) == 1 else "\n".join(f"{name}: {value}" for name, value in items)

    instruction = joined("instruction") if chosen["instruction"] else task
    system = joined("system") if chosen["system"] else None
    return Parts(system=system, instruction=instruction, input=joined("input"), output=joined("output"))


def layout(fmt: str, parts: Parts) -> dict[str, Any]:
    """The columns of one sample in a training format (``raw`` is handled by the caller)."""
    if fmt == "messages":
        turns = [{"role": "system", "content": parts.system}] if parts.system is not None else []
        return {"messages": [*turns, {"role": "user", "content": parts.prompt},
                             {"role": "assistant", "content": parts.output}]}
    if fmt == "prompt-completion":
        prompt = f"{parts.system}\n\n{parts.prompt}" if parts.system else parts.prompt
        return {"prompt": prompt, "completion": parts.output}
    if fmt == "sharegpt":
        row: dict[str, Any] = {"conversations": [{"from": "human", "value": parts.prompt},
                                                 {"from": "gpt", "value": parts.output}]}
        return {**row, "system": parts.system} if parts.system is not None else row
    if fmt == "alpaca":
        row = {"instruction": parts.instruction, "input": parts.input, "output": parts.output}
        return {**row, "system": parts.system} if parts.system is not None else row
    raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
