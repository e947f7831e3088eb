"""Options shared by ``run`` and ``plan``, and how they become a :class:`RunConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from treesynth.errors import ConfigError

if TYPE_CHECKING:
    from treesynth.config import RunConfig

Model = Annotated[str | None, typer.Option("--model", "-m", help="provider/model (litellm), a local/... embedded "
                                           "model or test/fake. Default: the embedded "
                                           "local/qwen2.5-coder-1.5b-instruct.")]
ApiBase = Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")]
StructuredOutput = Annotated[str | None, typer.Option(
    "--structured-output",
    help="auto | json_schema | json_object_schema | json_object | prompt: how the provider is asked for JSON. "
         "Default auto: json_schema first for a server at --api-base, "
         "falling back in that order when the server refuses the format.")]
RoleModels = Annotated[list[str] | None, typer.Option("--role-model", help="ROLE=MODEL for one role (pivots, "
                                                      "criterion, coverage, leaf); repeatable.")]
RoleTemperatures = Annotated[list[str] | None, typer.Option("--role-temperature", help="ROLE=T; repeatable.")]
Depth = Annotated[int | None, typer.Option(help="Maximum tree depth (>= 1).")]
Width = Annotated[int | None, typer.Option(help="Maximum finite children per node (>= 2).")]
Pivots = Annotated[int | None, typer.Option(help="Pivot samples per internal node.")]
Samples = Annotated[int | None, typer.Option("--samples", "-n", help="Samples to deliver.")]
PerCall = Annotated[int | None, typer.Option(help="Samples requested per synthesis call.")]
Concurrency = Annotated[int | None, typer.Option(help="Most LLM calls in flight.")]
Seed = Annotated[int | None, typer.Option(help="Run seed (drives every per-call seed).")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (re-use it to resume). "
                                          "Default: runs/<task-slug>.")]
Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (or a run.json).")]


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or []:
        role, sep, value = item.partition("=")
        if not sep or not role or not value:
            raise ConfigError(f"{flag} expects ROLE=VALUE (e.g. {flag} leaf=...), got {item!r}")
        pairs[role.strip()] = value.strip()
    return pairs


def build_config(config: Path | None, *, role_models: list[str] | None = None,
                 role_temperatures: list[str] | None = None, **flags: Any) -> RunConfig:
    """Load ``--config`` (or defaults) and apply the flags that were given (``None`` means not given).

    Without ``--config`` and ``--model``, the embedded model is used (an error names the fixes when it is
    not installed) with :data:`~treesynth.config.EMBEDDED_DEFAULTS` under the given flags.
    """
    from treesynth.config import RunConfig
    from treesynth.providers.factory import default_model

    if config is None and flags.get("model") is None:
        flags["model"] = default_model()
    base = RunConfig.load(config) if config else RunConfig.defaults_for(str(flags["model"]))
    keys = {"model": "model.model", "api_base": "model.api_base", "structured_output": "model.structured_output",
            "depth": "tree.depth", "width": "tree.width",
            "pivots": "tree.pivots", "samples": "synthesis.samples", "samples_per_call": "synthesis.samples_per_call",
            "concurrency": "concurrency", "seed": "seed"}
    overrides: dict[str, Any] = {keys[name]: value for name, value in flags.items()}
    for role, model in _pairs(role_models, "--role-model").items():
        overrides[f"model.roles.{role}.model"] = model
    for role, temperature in _pairs(role_temperatures, "--role-temperature").items():
        overrides[f"model.roles.{role}.temperature"] = temperature
    return base.with_overrides(overrides)
