"""The tree-shape search space of ``treesynth tune``: what a trial may vary, and how it maps to a config.

A space file (YAML) gives ``[low, high]`` (or ``[low, high, step]``) per parameter, a single value to fix
it, and optionally compiled programs to choose from (``none`` is always a choice)::

    depth: [1, 3]
    width: [2, 6]
    pivots: [3, 8]
    samples_per_call: [2, 8]
    leaf_temperature: [0.5, 1.3, 0.1]
    pivots_temperature: [0.5, 1.3, 0.1]
    programs: [compiled.json]
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from treesynth.config import RunConfig
from treesynth.errors import ConfigError
from treesynth.io import read_yaml_mapping

NO_PROGRAM = "none"


class Suggester(Protocol):
    """The part of ``optuna.Trial`` a search space uses (``FixedTrial`` works too)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        """An integer in ``[low, high]``."""
        ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        """A float in ``[low, high]``."""
        ...

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        """One of ``choices``."""
        ...


@dataclass(frozen=True)
class Range:
    """An inclusive range; ``integer`` ranges step by whole numbers; ``low == high`` fixes the value."""

    low: float
    high: float
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: Suggester, name: str) -> float | int:
        """Draw a value for parameter ``name``."""
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(name, self.low, self.high, step=self.step)

    def clamp(self, value: float) -> float | int:
        """``value`` moved into the range (on the step grid)."""
        inside = min(max(value, self.low), self.high)
        if self.step:
            inside = self.low + round((inside - self.low) / self.step) * self.step
            inside = round(min(inside, self.high), 10)
        return round(inside) if self.integer else inside


CONFIG_KEYS: dict[str, str] = {
    "depth": "tree.depth",
    "width": "tree.width",
    "pivots": "tree.pivots",
    "samples_per_call": "synthesis.samples_per_call",
    "leaf_temperature": "model.roles.leaf.temperature",
    "pivots_temperature": "model.roles.pivots.temperature",
}
"""Each tunable parameter's dotted key in :class:`RunConfig`."""


def _int(low: int, high: int) -> Range:
    return Range(low, high, 1, integer=True)


@dataclass(frozen=True)
class SearchSpace:
    """Ranges of the tunable parameters and the compiled programs a trial may use."""

    depth: Range = field(default_factory=lambda: _int(1, 3))
    width: Range = field(default_factory=lambda: _int(2, 6))
    pivots: Range = field(default_factory=lambda: _int(3, 8))
    samples_per_call: Range = field(default_factory=lambda: _int(2, 8))
    leaf_temperature: Range = field(default_factory=lambda: Range(0.5, 1.3, 0.1))
    pivots_temperature: Range = field(default_factory=lambda: Range(0.5, 1.3, 0.1))
    programs: tuple[str, ...] = ()

    def ranges(self) -> dict[str, Range]:
        """Parameter name -> range, in a fixed order."""
        return {name: getattr(self, name) for name in CONFIG_KEYS}

    def suggest(self, trial: Suggester) -> dict[str, Any]:
        """Draw every parameter (and the program when there are programs to choose from)."""
        params: dict[str, Any] = {name: rng.suggest(trial, name) for name, rng in self.ranges().items()}
        if self.programs:
            params["program"] = trial.suggest_categorical("program", [NO_PROGRAM, *self.programs])
        return params

    @staticmethod
    def overrides(params: dict[str, Any]) -> dict[str, Any]:
        """Dotted :meth:`RunConfig.with_overrides` keys for drawn ``params`` (the program is not config)."""
        return {CONFIG_KEYS[name]: value for name, value in params.items() if name in CONFIG_KEYS}

    def baseline(self, config: RunConfig) -> dict[str, Any]:
        """``config``'s own values, clamped into the space (enqueued as the first trial)."""
        values = {"depth": config.tree.depth, "width": config.tree.width, "pivots": config.tree.pivots,
                  "samples_per_call": config.synthesis.samples_per_call,
                  "leaf_temperature": config.model.temperature("leaf"),
                  "pivots_temperature": config.model.temperature("pivots")}
        params: dict[str, Any] = {name: rng.clamp(values[name]) for name, rng in self.ranges().items()}
        if self.programs:
            params["program"] = NO_PROGRAM
        return params

    def as_dict(self) -> dict[str, Any]:
        """A YAML/JSON-ready description (the space file format)."""
        out: dict[str, Any] = {}
        for name, rng in self.ranges().items():
            out[name] = [rng.low, rng.high] if rng.step is None else [rng.low, rng.high, rng.step]
        out["programs"] = list(self.programs)
        return out

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], *, source: str = "search space") -> SearchSpace:
        """Build from a mapping in the space file format; errors name the key."""
        unknown = sorted(set(raw) - set(CONFIG_KEYS) - {"programs"})
        if unknown:
            raise ConfigError(f"{source}: unknown parameter(s) {unknown}; tunable: {', '.join(CONFIG_KEYS)}, programs")
        space = cls()
        changes: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "programs":
                changes[name] = tuple(str(p) for p in (value or []))
            else:
                changes[name] = _parse_range(value, getattr(space, name), f"{source}: {name}")
                _check_bounds(changes[name], CONFIG_KEYS[name], f"{source}: {name}")
        return replace(space, **changes)

    @classmethod
    def load(cls, path: Path) -> SearchSpace:
        """Read a space file (YAML)."""
        raw = read_yaml_mapping(path, "search space file", "parameter ranges")
        return cls.from_mapping(raw, source=str(path))


def _parse_range(value: Any, default: Range, where: str) -> Range:
    items = value if isinstance(value, list) else [value, value]
    if not 2 <= len(items) <= 3 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"{where}: expected [low, high], [low, high, step] or one number, got {value!r}")
    low, high = float(items[0]), float(items[1])
    if low > high:
        raise ConfigError(f"{where}: low {low:g} is above high {high:g}")
    step = float(items[2]) if len(items) == 3 else default.step
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step {step:g} must be above 0; give [low, high, step] with a positive step")
    if default.integer and not all(float(v).is_integer() for v in items):
        raise ConfigError(f"{where}: expected whole numbers, got {value!r}")
    return Range(low, high, step, integer=default.integer)


def _check_bounds(rng: Range, key: str, where: str) -> None:
    """Refuse a range reaching values the run configuration rejects (every trial would fail)."""
    for bound in (rng.low, rng.high):
        try:
            RunConfig().with_overrides({key: round(bound) if rng.integer else bound})
        except ConfigError as exc:
            reason = str(exc).removeprefix("options: ")
            raise ConfigError(f"{where}: {bound:g} is out of range ({reason}); narrow the range") from None


def space_fields() -> list[str]:
    """The names a space file may use."""
    return [f.name for f in fields(SearchSpace)]
