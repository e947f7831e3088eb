"""The options ``run``, ``balance``, ``compile`` and ``tune`` share, declared once, and how they become a
:class:`RunConfig`.

A command takes a ``options: RunOptions`` parameter; :func:`treesynth.cli._common.cli_command` spreads the
fields below into the command's ``--help`` (``omit`` drops the ones a command does not offer) and packs the
parsed values back into one :class:`RunOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from treesynth.errors import ConfigError

if TYPE_CHECKING:
    from treesynth.config import RunConfig

TREE_SHAPE = ("depth", "width", "pivots", "samples_per_call")
"""The tree-shape options; ``tune`` searches over them instead of offering them."""

_KEYS = {"model": "model.model", "api_base": "model.api_base", "structured_output": "model.structured_output",
         "depth": "tree.depth", "width": "tree.width", "pivots": "tree.pivots", "samples": "synthesis.samples",
         "samples_per_call": "synthesis.samples_per_call", "concurrency": "concurrency", "seed": "seed"}
"""Option name -> dotted :class:`RunConfig` key: the one home of the flag-to-config mapping."""


@dataclass(frozen=True)
class RunOptions:
    """Model, roles, tree shape, concurrency, seed and ``--config`` of one command; ``None`` means not given.

    The field names are the command parameters Typer sees, the annotations their ``--help`` entries.
    """

    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="provider/model (litellm), a local/... embedded model or test/fake. "
                              "Default: the embedded local/qwen2.5-coder-1.5b-instruct.")] = None
    api_base: Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")] = None
    structured_output: Annotated[str | None, typer.Option(
        "--structured-output",
        help="auto | json_schema | json_object_schema | json_object | prompt: how the provider is asked for JSON. "
             "Default auto: json_schema first for a server at --api-base, "
             "falling back in that order when the server refuses the format.")] = None
    role_models: Annotated[list[str] | None, typer.Option(
        "--role-model", help="ROLE=MODEL for one role (pivots, criterion, coverage, leaf); repeatable.")] = None
    role_temperatures: Annotated[list[str] | None, typer.Option("--role-temperature",
                                                                help="ROLE=T; repeatable.")] = None
    depth: Annotated[int | None, typer.Option(help="Maximum tree depth (>= 1).")] = None
    width: Annotated[int | None, typer.Option(help="Maximum finite children per node (>= 2).")] = None
    pivots: Annotated[int | None, typer.Option(help="Pivot samples per internal node.")] = None
    samples: Annotated[int | None, typer.Option("--samples", "-n", help="Samples to deliver.")] = None
    samples_per_call: Annotated[int | None, typer.Option(help="Samples requested per synthesis call.")] = None
    concurrency: Annotated[int | None, typer.Option(help="Most LLM calls in flight.")] = None
    seed: Annotated[int | None, typer.Option(help="Run seed (drives every per-call seed).")] = None
    near_dup: Annotated[str | None, typer.Option(
        "--near-dup", metavar="J|off",
        help="Jaccard similarity (MinHash over word 2-grams) at which a synthesized candidate is rejected as a "
             "near-duplicate of an accepted sample and replaced; 0 or off disables. Default 0.8 (config key "
             "synthesis.near_dup).")] = None
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (or a run.json).")] = None

    def to_config(self) -> RunConfig:
        """Load ``--config`` (or defaults) and apply the options that were given.

        Without ``--config`` and ``--model``, the embedded model is used (an error names the fixes when it is
        not installed) with :data:`~treesynth.config.EMBEDDED_DEFAULTS` under the given options.

        Raises:
            ConfigError: a bad value, config file or ``ROLE=VALUE`` pair.
        """
        from treesynth.config import RunConfig
        from treesynth.providers.factory import default_model

        model = self.model
        if self.config is None and model is None:
            model = default_model()
        base = RunConfig.load(self.config) if self.config else RunConfig.defaults_for(str(model))
        overrides: dict[str, Any] = {key: getattr(self, name) for name, key in _KEYS.items()}
        overrides["model.model"] = model
        overrides["synthesis.near_dup"] = near_dup_threshold(self.near_dup)
        for role, value in _pairs(self.role_models, "--role-model").items():
            overrides[f"model.roles.{role}.model"] = value
        for role, temperature in _pairs(self.role_temperatures, "--role-temperature").items():
            overrides[f"model.roles.{role}.temperature"] = temperature
        return base.with_overrides(overrides)


def near_dup_threshold(value: str | None) -> float | None:
    """``--near-dup``'s value as a threshold: ``off`` (or ``0``) is 0.0, a number in [0, 1] itself; ``None`` stays."""
    if value is None:
        return None
    if value.strip().casefold() in ("off", "no", "none", "false"):
        return 0.0
    try:
        threshold = float(value)
    except ValueError:
        threshold = -1.0
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--near-dup expects a Jaccard threshold in [0, 1] (e.g. 0.8) or off, got {value!r}")
    return threshold


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or []:
        role, sep, value = item.partition("=")
        if not sep or not role or not value:
            raise ConfigError(f"{flag} expects ROLE=VALUE (e.g. {flag} leaf=...), got {item!r}")
        pairs[role.strip()] = value.strip()
    return pairs
