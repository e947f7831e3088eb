"""``run.json``: the typed record every kind of run writes (run, balance, baseline, compile, tune trial).

One model, one ``counts`` shape: ``samples`` is always what the run delivered (for ``balance``, the rows
of ``balanced.jsonl``); the balance-only tallies and sections are ``None`` elsewhere. :func:`write_record` writes it
atomically; :func:`read_record` validates one from disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from treesynth.errors import ConfigError, first_validation_error
from treesynth.store import write_atomic

RECORD_VERSION = 1
RunKind = Literal["run", "balance", "baseline", "compile", "tune-trial"]
RunStatus = Literal["complete", "partial", "failed", "interrupted", "tree"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Counts(_Strict):
    """What the run produced. Tree fields are 0 for runs without a tree (``compile``)."""

    samples: int = Field(0, description="delivered samples (balance: rows of balanced.jsonl)")
    target: int = Field(0, description="samples asked for")
    shortfall: int = Field(0, description="target minus delivered, at least 0")
    nodes: int = Field(0, description="nodes of the tree")
    leaves: int = Field(0, description="leaves (atomic subspaces) of the tree")
    max_depth: int = Field(0, description="depth of the deepest node")
    early_leaves: int = Field(0, description="leaves that stopped before the depth limit")
    infinite_splits: int = Field(0, description="splits whose values became one infinite child (more values than "
                                                "the width, or unbounded): drawn per call, not separate branches")
    duplicates_removed: int = Field(0, description="candidates dropped as exact or normalized duplicates")
    unused_candidates: int = Field(0, description="accepted-but-unneeded candidates kept in the store")
    near_duplicates: int = Field(0, description="candidates rejected as near-duplicates of an accepted sample "
                                 "(MinHash Jaccard >= synthesis.near_dup, or the embedding check) and replaced")
    rejected: int = Field(0, description="candidates and pivots the sample gate turned away (near-duplicates "
                                         "included)")
    rejected_by_reason: dict[str, int] = Field(default_factory=dict,
                                               description="the lines of rejected.jsonl by reason")
    input: int | None = Field(None, description="balance: input records")
    kept: int | None = Field(None, description="balance: input records kept")
    downsampled: int | None = Field(None, description="balance: input records dropped from crowded leaves")
    duplicate: int | None = Field(None, description="balance: input records that duplicate a kept one")
    unrouted: int | None = Field(None, description="balance: input records no child fitted")
    synthesized: int | None = Field(None, description="balance: rows synthesized into sparse leaves")


class StageCalls(_Strict):
    """Calls of one stage and model: counts, tokens, time, and the estimated cost (``None``: unknown prices)."""

    stage: str = Field(description="pivots, criterion, labels, coverage, leaf, routing, personas, a baseline...")
    model: str = Field(description="the litellm model string")
    calls: int
    failed: int
    parse_failures: int = Field(0, description="failed calls whose answer did not parse")
    prompt_tokens: int
    completion_tokens: int
    seconds: float = Field(0.0, description="summed call time")
    retries: int = 0
    cache_hits: int = 0
    cost_usd: float | None = Field(None, description="estimated; None when the model's prices are unknown")


class Ledger(_Strict):
    """Every LLM call of the run: totals, and one row per stage and model."""

    calls: int = Field(0, description="LLM calls (a call retried counts once)")
    failed: int = Field(0, description="calls that failed after every retry")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = Field(0, description="retries over all calls")
    cache_hits: int = Field(0, description="calls answered from DSPy's cache")
    by_stage: list[StageCalls] = Field(default_factory=list, description="one row per stage and model")
    cost_usd: float | None = Field(0.0, description="estimated total; None when a model's prices are unknown")


class Timings(_Strict):
    """Wall time of this session and of all sessions of a resumed run."""

    seconds_this_session: float
    seconds_total: float


class Reused(_Strict):
    """What a resumed session found in the store: the work of the run's earlier sessions, read back, not redone."""

    nodes: int = Field(description="expanded nodes read back (none is expanded again)")
    known_nodes: int = Field(description="nodes known then: the expanded ones plus their unexpanded children")
    samples: int = Field(description="samples kept from earlier sessions")
    calls: int = Field(description="LLM calls of earlier sessions")
    status: RunStatus | None = Field(None, description="the status the last session recorded (None: it wrote none)")
    target: int | None = Field(None, description="the samples target the last session recorded")


class BalanceInput(_Strict):
    """The dataset a balance run read."""

    path: str
    records: int
    field: str = Field(description="the text field (or fields) routed")


class Distribution(_Strict):
    """How evenly samples spread over the leaves."""

    normalized_entropy: float | None = Field(description="H / log L over the leaves; None (n/a) for one leaf")
    gini: float | None = Field(description="Gini coefficient over the leaves; None (n/a) for one leaf")
    empty_leaves: int
    samples: int


class Distributions(_Strict):
    """The leaf distribution of the input (``before``) and of ``balanced.jsonl`` (``after``)."""

    before: Distribution
    after: Distribution


class RoutingStats(_Strict):
    """What routing the input through the tree cost."""

    calls: int
    decisions: int
    calls_per_sample_per_level: float


class RunRecord(_Strict):
    """The contents of ``run.json``."""

    record_version: int = Field(RECORD_VERSION, description="the version of this layout")
    kind: RunKind = Field(description="run, balance, baseline, compile or tune-trial")
    status: RunStatus = Field(description="complete; partial (a shortfall, or stopped: re-run to resume); failed "
                                          "(an error before any sample, or a crash; the store keeps all work); "
                                          "interrupted (Ctrl-C: the exports hold what exists, re-run to resume)")
    error: str | None = Field(None, description="why the run stopped, in one line")
    resume: str | None = Field(None, description="how to resume a run that is not complete")
    task: dict[str, Any] | None = Field(None, description="description, fields, first_split")
    method: str | None = Field(None, description="baseline: temperature, evol or persona")
    counts: Counts = Field(default_factory=Counts, description="see `counts.*`")
    llm: Ledger = Field(default_factory=Ledger, description="see `llm.*`")
    timings: Timings = Field(description="seconds_this_session, seconds_total (over resumed sessions)")
    sessions: int = Field(1, description="sessions that worked on this run (above 1: it was resumed)")
    reused: Reused | None = Field(None, description="a resumed session: what it read back from earlier sessions")
    allocation: dict[str, dict[str, int]] = Field(default_factory=dict, description="quota: per-leaf targets")
    config: dict[str, Any] = Field(default_factory=dict, description="the full RunConfig (`--config` reads it back)")
    versions: dict[str, str] = Field(default_factory=dict, description="python, treesynth, dspy, litellm, ...")
    input: BalanceInput | None = Field(None, description="balance: the input dataset")
    distribution: Distributions | None = Field(None, description="balance: the leaf distribution before and after")
    routing: RoutingStats | None = Field(None, description="balance: routing cost")
    report: dict[str, Any] | None = Field(None, description="compile: the before/after report per module")

    def as_dict(self) -> dict[str, Any]:
        """The JSON mapping written to disk."""
        return self.model_dump(mode="json")


def describe() -> str:
    """The Markdown reference of ``run.json`` (the README's section is this text; a test keeps them equal)."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    for model, prefix in ((RunRecord, ""), (Counts, "counts."), (Ledger, "llm."), (StageCalls, "llm.by_stage[]."),
                          (Reused, "reused.")):
        for name, info in model.model_fields.items():
            kind = _type_name(info.annotation)
            lines.append(f"| `{prefix}{name}` | `{kind}` | {info.description or ''} |")
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("treesynth.record.", "").replace("typing.", "").replace(" | ", " or ")


def write_record(out: Path, record: RunRecord) -> dict[str, Any]:
    """Write ``out/run.json`` atomically; return its mapping."""
    data = record.as_dict()
    write_atomic(out / "run.json", json.dumps(data, indent=2, ensure_ascii=False))
    return data


def read_record(path: Path) -> RunRecord:
    """Load and validate a ``run.json`` (a one-line :class:`ConfigError` when it is not one)."""
    try:
        return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a treesynth run.json ({first_validation_error(exc)})") from None
