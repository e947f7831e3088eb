"""Frozen, validated run configuration. A YAML file round-trips through :class:`RunConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from treesynth.errors import ConfigError, first_validation_error
from treesynth.io import read_yaml_mapping

Role = Literal["pivots", "criterion", "coverage", "leaf", "routing"]
ROLES: tuple[Role, ...] = get_args(Role)
"""Every role a model can serve (the one list help texts and errors name)."""

StructuredOutput = Literal["auto", "json_schema", "json_object_schema", "json_object", "prompt"]
"""How a provider model is asked for structured output (see :mod:`treesynth.providers.structured`)."""
_STRUCTURED_HELP = (
    "how the provider's server is asked for JSON: json_schema (OpenAI structured outputs: vLLM, llama.cpp's "
    "llama-server, Ollama, LM Studio, SGLang), json_object_schema ({'type': 'json_object', 'schema': ...}: "
    "llama-cpp-python's server), json_object (JSON mode, no schema), prompt (no response_format: the prompt "
    "alone); auto picks by model and falls back along that order when the server refuses the format. "
    "In-process models (local/..., test/fake) ignore it")

_DEFAULT_TEMPERATURE: dict[str, float] = {"pivots": 1.0, "criterion": 0.7, "coverage": 0.7, "leaf": 1.0,
                                          "routing": 0.3}


EMBEDDED_DEFAULTS: dict[str, Any] = {
    "tree.depth": 2, "tree.width": 4, "tree.pivots": 5, "synthesis.samples": 12, "synthesis.samples_per_call": 3,
    "concurrency": 2, "model.max_tokens": 400, "synthesis.call_budget_factor": 4.0,
}
"""Defaults for the embedded 1.5B model on a CPU: a small tree and short calls, so the README's main job
(``-n 12``) takes minutes on two cores. Applied by the CLI when an embedded model is used without a config
file; explicit flags win."""

LOCAL_MODEL_PREFIX = "local/"
"""Model strings of embedded models, run in this process (one generation at a time per model)."""


def is_local_model(model: str | None) -> bool:
    """Whether ``model`` names an embedded (in-process) model."""
    return str(model).startswith(LOCAL_MODEL_PREFIX)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TreeConfig(_Frozen):
    """Shape of the partitioning tree."""

    depth: int = Field(3, ge=1, le=10, description="maximum depth; leaves sit at this depth at the latest")
    width: int = Field(4, ge=2, le=50, description="maximum finite children; more values make one infinite child")
    pivots: int = Field(6, ge=2, le=30, description="pivot samples generated at each internal node")
    split_attempts: int = Field(3, ge=1, le=10, description="criterion attempts before a node becomes a leaf")
    pool_size: int = Field(24, ge=2, le=200, description="most values kept in an infinite node's value pool")


class SynthesisConfig(_Frozen):
    """How leaves are filled."""

    samples: int = Field(100, ge=1, description="total samples to deliver (n)")
    samples_per_call: int = Field(5, ge=1, le=50, description="samples requested per leaf-synthesis call (k)")
    infinite_weight: float | None = Field(
        None, ge=1.0, description="allocation weight of each infinite step on a leaf's path (default: tree width)"
    )
    avoid_examples: int = Field(3, ge=0, le=50, description="recent samples of the leaf shown as 'avoid'")
    call_budget_factor: float = Field(
        2.0, ge=1.0, le=20.0, description="a leaf may make this many times the calls its quota needs, plus two"
    )
    near_dup: float = Field(
        0.8, ge=0.0, le=1.0, description="Jaccard similarity (word 2-gram shingles, MinHash LSH) at which a candidate "
        "is rejected as a near-duplicate of an accepted sample and replaced; 0 turns the check off")
    near_dup_embedding: float | None = Field(
        None, gt=0.0, le=1.0, description="also reject a candidate whose MiniLM embedding has at least this cosine "
        "similarity with an accepted sample (e.g. 0.95; off by default; needs the embed extra)")


class RoleModel(_Frozen):
    """Per-role model override."""

    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=16)
    structured_output: StructuredOutput | None = Field(
        None, description="the role's structured-output setting (overrides model.structured_output; roles on "
                          "the same model must agree)")


class ModelConfig(_Frozen):
    """Which LM serves each role. ``model`` is a litellm-style ``provider/model`` string."""

    model: str | None = Field(None, description="default model for every role; None picks the embedded model")
    api_base: str | None = None
    engine: Literal["litellm", "native"] = Field(
        "litellm", description="litellm (every provider, Router, custom providers) or DSPy's native client")
    max_tokens: int = Field(1024, ge=16)
    cache: bool = Field(True, description="DSPy's request cache (keys include each call's seed)")
    attempts: int = Field(6, ge=1, le=20, description="tries per call on overload, server errors and timeouts")
    rate_limit_wait: float = Field(600.0, ge=0, description="seconds one call may wait out rate limits (429s) "
                                   "without using up its attempts")
    timeout: float = Field(120.0, gt=0, description="seconds before one attempt is abandoned")
    failure_limit: int = Field(8, ge=1, description="consecutive failed calls that stop the run as partial")
    structured_output: StructuredOutput = Field("auto", description=_STRUCTURED_HELP)
    roles: dict[Role, RoleModel] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_structured_output_per_model(self) -> ModelConfig:
        """The setting describes a model's server, so every role on one model must resolve to the same one."""
        seen: dict[str, tuple[Role, StructuredOutput]] = {}
        for role in ROLES:
            model, setting = self.model_for(role), self.structured_output_for(role)
            if model is None:
                continue
            first = seen.setdefault(model, (role, setting))
            if first[1] != setting:
                raise ValueError(f"roles {first[0]} and {role} both run {model} but with structured_output "
                                 f"{first[1]} and {setting}; set one value for that model")
        return self

    def structured_output_for(self, role: Role) -> StructuredOutput:
        """Structured-output setting for ``role``: the role override or the model default."""
        override = self.roles.get(role)
        if override is not None and override.structured_output is not None:
            return override.structured_output
        return self.structured_output

    def temperature(self, role: Role) -> float:
        """Temperature for ``role``: the role override or the role's default."""
        override = self.roles.get(role)
        if override is not None and override.temperature is not None:
            return override.temperature
        return _DEFAULT_TEMPERATURE[role]

    def model_for(self, role: Role) -> str | None:
        """Model string for ``role``: the role override or the default model."""
        override = self.roles.get(role)
        return override.model if override is not None and override.model else self.model

    def max_tokens_for(self, role: Role) -> int:
        """Completion-token cap for ``role``."""
        override = self.roles.get(role)
        return override.max_tokens if override is not None and override.max_tokens else self.max_tokens


class BudgetConfig(_Frozen):
    """Spending guards. Not part of a run's identity: re-running with a higher cap resumes the run."""

    max_calls: int | None = Field(
        None, ge=1, description="most LLM calls one run may make (its ledger over every session); none: no cap")
    max_cost_usd: float | None = Field(
        None, gt=0, description="most estimated US dollars one run may spend (every session); none: no cap")
    confirm_calls: int = Field(
        10_000, ge=1, description="a planned run above this many LLM calls asks for confirmation (--yes)")
    confirm_cost_usd: float = Field(
        5.0, ge=0, description="a planned run above this many US dollars asks for confirmation (--yes)")


class ExecutorConfig(_Frozen):
    """Where leaf calls run. Not part of a run's identity: a run started under one executor resumes under the other."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: every call in this process; ray: leaf calls on Ray workers (treesynth[ray])")
    address: str | None = Field(
        None, description="the Ray cluster: auto, ray://HOST:PORT or HOST:PORT; none: a local Ray instance")
    workers: int | None = Field(
        None, ge=1, le=4096, description="Ray worker processes (actors); none: one per CPU of the cluster")
    env: tuple[str, ...] = Field(
        (), description="further environment variables to hand to the workers (provider keys are handed on "
                        "already); values are read from this process's environment, never written to disk")


class RunConfig(_Frozen):
    """Everything that shapes a run. Written to ``run.json`` and loadable again with ``--config``."""

    tree: TreeConfig = Field(default_factory=TreeConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    concurrency: int = Field(8, ge=1, le=1024, description="most LLM calls in flight at once")
    seed: int = Field(0, ge=0)

    @classmethod
    def defaults_for(cls, model: str) -> RunConfig:
        """The default configuration for ``model``: :data:`EMBEDDED_DEFAULTS` on top for embedded models."""
        config = cls().with_overrides({"model.model": model})
        return config.with_overrides(EMBEDDED_DEFAULTS) if is_local_model(model) else config

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        """Read a YAML (or JSON) config file; errors name the file and the bad key."""
        raw = read_yaml_mapping(path, "config file", "settings")
        raw = raw.get("config", raw) if "counts" in raw else raw  # accept a run.json as config
        return cls.parse(raw, source=str(path))

    @classmethod
    def parse(cls, raw: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Validate a mapping, turning the first pydantic error into a one-line :class:`ConfigError`."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {first_validation_error(exc)}") from None

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """Return a copy with dotted-key overrides (``{"tree.depth": 3}``) applied and validated."""
        data = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            if value is None:
                continue
            target = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                target = target.setdefault(key, {})
            target[leaf] = value
        return self.parse(data, source="options")

    def dump_yaml(self) -> str:
        """The config as YAML, suitable for ``--config``."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
