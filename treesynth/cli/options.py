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

from treesynth.config import EMBEDDED_DEFAULTS, ROLES, ModelConfig
from treesynth.errors import ConfigError

if TYPE_CHECKING:
    from treesynth.config import RunConfig

TREE_SHAPE = ("depth", "width", "pivots", "samples_per_call")
"""The tree-shape options; ``tune`` searches over them instead of offering them."""

_KEYS = {"model": "model.model", "api_base": "model.api_base", "structured_output": "model.structured_output",
         "depth": "tree.depth", "width": "tree.width", "pivots": "tree.pivots", "samples": "synthesis.samples",
         "samples_per_call": "synthesis.samples_per_call", "concurrency": "concurrency", "seed": "seed",
         "max_calls": "budget.max_calls", "max_cost": "budget.max_cost_usd", "executor": "executor.kind",
         "ray_address": "executor.address", "workers": "executor.workers"}
"""Option name -> dotted :class:`RunConfig` key: the one home of the flag-to-config mapping."""


def default_text(key: str) -> str:
    """``[default: …]`` (escaped for rich) for a dotted :class:`RunConfig` key, with the embedded model's default
    where it differs."""
    from treesynth.config import RunConfig

    value: Any = RunConfig().model_dump(mode="json")
    for part in key.split("."):
        value = value[part]
    embedded = EMBEDDED_DEFAULTS.get(key)
    both = f"{value}; embedded model: {embedded}" if embedded is not None and embedded != value else f"{value}"
    return rf"\[default: {both}]"  # escaped: rich would read [...] as markup


def _with_default(text: str, key: str) -> str:
    return f"{text} {default_text(key)}"


_TEMPERATURES = r"\[default: " + ", ".join(f"{role}={ModelConfig().temperature(role):g}" for role in ROLES) + "]"

MaxCalls = Annotated[int | None, typer.Option(
    "--max-calls", help="Spending cap: most LLM calls per run directory (over all its sessions); at the cap "
                               "no call starts, the run stops partial and a re-run with a higher cap resumes it. "
                               r"\[default: no cap]")]
MaxCost = Annotated[float | None, typer.Option(
    "--max-cost", help="Spending cap: most estimated US dollars per run directory (over all its sessions), "
                                "like --max-calls. " r"\[default: no cap]")]


@dataclass(frozen=True)
class RunOptions:
    """Model, roles, tree shape, concurrency, seed and ``--config`` of one command; ``None`` means not given.

    The field names are the command parameters Typer sees, the annotations their ``--help`` entries.
    """

    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="provider/model (litellm), a local/... embedded model or test/fake. "
                              r"\[default: the embedded local/qwen2.5-coder-1.5b-instruct]")] = None
    api_base: Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server. "
                                                      r"\[default: the provider's own]")] = None
    structured_output: Annotated[str | None, typer.Option(
        "--structured-output",
        help="auto | json_schema | json_object_schema | json_object | prompt: how the provider is asked for JSON. "
             "auto: json_schema first for a server at --api-base, falling back in that order when the server "
             r"refuses the format. \[default: auto]")] = None
    role_models: Annotated[list[str] | None, typer.Option(
        "--role-model", help=f"ROLE=MODEL for one role ({', '.join(ROLES)}); repeatable. "
                              r"\[default: --model for every role]")] = None
    role_temperatures: Annotated[list[str] | None, typer.Option(
        "--role-temperature", help=f"ROLE=T for one role ({', '.join(ROLES)}); repeatable. {_TEMPERATURES}")] = None
    depth: Annotated[int | None, typer.Option(help=_with_default("Maximum tree depth (>= 1).", "tree.depth"))] = None
    width: Annotated[int | None, typer.Option(help=_with_default("Maximum finite children per node (>= 2).",
                                                                 "tree.width"))] = None
    pivots: Annotated[int | None, typer.Option(help=_with_default("Pivot samples per internal node.",
                                                                  "tree.pivots"))] = None
    samples: Annotated[int | None, typer.Option("--samples", "-n", help=_with_default(
        "Samples to deliver.", "synthesis.samples"))] = None
    samples_per_call: Annotated[int | None, typer.Option(help=_with_default(
        "Samples requested per synthesis call.", "synthesis.samples_per_call"))] = None
    concurrency: Annotated[int | None, typer.Option(help=_with_default("Most LLM calls in flight.",
                                                                       "concurrency"))] = None
    seed: Annotated[int | None, typer.Option(help=_with_default("Run seed (drives every per-call seed).",
                                                                "seed"))] = None
    near_dup: Annotated[str | None, typer.Option(
        "--near-dup", metavar="J|off",
        help="Jaccard similarity (MinHash over word 2-grams) at which a synthesized candidate is rejected as a "
             "near-duplicate of an accepted sample and replaced; 0 or off disables (config key synthesis.near_dup). "
             r"\[default: 0.8]")] = None
    max_calls: MaxCalls = None
    max_cost: MaxCost = None
    executor: Annotated[str | None, typer.Option(
        "--executor", metavar="local|ray",
        help="Where leaf calls run: local (this process) or ray (Ray workers, needs treesynth\\[ray]); a run "
             r"started under one resumes under the other. \[default: local]")] = None
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", metavar="auto|ray://HOST:PORT",
        help="The Ray cluster to use (implies --executor ray): auto (the cluster started with `ray start` on "
             r"this machine) or ray://HOST:PORT. \[default: a local Ray instance]")] = None
    workers: Annotated[int | None, typer.Option(
        "--workers", help=r"Ray workers (with --executor ray). \[default: one per CPU of the cluster]")] = None
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (or a run.json). "
                                                r"\[default: none: the defaults above]")] = None

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
        overrides["executor.kind"] = executor_kind(self.executor, self.ray_address, self.workers)
        for role, value in _pairs(self.role_models, "--role-model").items():  # roles checked in _pairs
            overrides[f"model.roles.{role}.model"] = value
        for role, temperature in _pairs(self.role_temperatures, "--role-temperature").items():
            overrides[f"model.roles.{role}.temperature"] = temperature
        return base.with_overrides(overrides)


def executor_kind(kind: str | None, address: str | None, workers: int | None) -> str | None:
    """``--executor``'s value: ``ray`` when ``--ray-address`` or ``--workers`` is given without it; a usage error
    when it names anything else, or ``local`` beside Ray options."""
    if kind is not None and kind not in ("local", "ray"):
        raise ConfigError(f"--executor expects local or ray, got {kind!r}")
    if kind == "local" and (address is not None or workers is not None):
        flag = "--ray-address" if address is not None else "--workers"
        raise ConfigError(f"{flag} needs --executor ray (it was given with --executor local); drop one of them")
    return "ray" if kind is None and (address is not None or workers is not None) else kind


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
        if role.strip() not in ROLES:
            raise ConfigError(f"{flag} names an unknown role {role.strip()!r}; roles: {', '.join(ROLES)}")
        pairs[role.strip()] = value.strip()
    return pairs
