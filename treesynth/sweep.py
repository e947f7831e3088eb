"""Benchmark sweeps: methods x models x sizes x seeds (x TreeSynth configs), one run directory per cell.

A sweep file (YAML)::

    task: GSM8K-style grade-school math word problems     # a sentence or a task file
    methods: [treesynth, temperature, evol, persona]
    models: [test/fake]
    sizes: [50, 200]
    seeds: [0]
    config: {tree: {depth: 2, width: 4}}                   # base RunConfig for every cell
    treesynth_configs: {default: {}, deep: {tree: {depth: 3}}}   # optional TreeSynth variants
    embedder: lexical                                      # how diversity is measured
    executor: {kind: ray, workers: 4}                      # optional: cells in flight on a Ray cluster

Each cell is a normal run directory under ``<out>/cells/`` and is resumable: a finished cell is read
back, an unfinished one resumes. Results go to ``results.jsonl``, ``results.md`` and two plots, in cell
order. Under the ``local`` executor the cells run one after another; under ``ray`` Ray is initialized once
for the sweep and up to ``executor.workers`` cells (default: the cluster's CPUs) run at once, each a normal
run whose leaf calls go to its share of the workers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from treesynth.aio import gather_or_cancel, run_sync
from treesynth.config import ExecutorConfig, RunConfig
from treesynth.errors import ConfigError, first_validation_error
from treesynth.io import read_yaml_mapping
from treesynth.models import Task
from treesynth.store import write_atomic, write_jsonl_atomic

METHODS = ("treesynth", "temperature", "evol", "persona")


def _default_variants() -> dict[str, dict[str, Any]]:
    return {"default": {}}


class Sweep(BaseModel):
    """A validated sweep file."""

    model_config = ConfigDict(extra="forbid")

    task: str
    methods: list[str] = Field(default_factory=lambda: list(METHODS), min_length=1)
    models: list[str] = Field(min_length=1)
    sizes: list[int] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    treesynth_configs: dict[str, dict[str, Any]] = Field(default_factory=_default_variants)
    embedder: str = "lexical"
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    """Where the cells' calls run (every cell's ``executor``); under ``ray`` several cells run at once."""

    @classmethod
    def load(cls, path: Path) -> Sweep:
        """Read and validate a sweep file; errors name the file and key."""
        raw = read_yaml_mapping(path, "sweep file", "sweep settings")
        try:
            sweep = cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"sweep file {path}: {first_validation_error(exc)}") from None
        if unknown := [m for m in sweep.methods if m not in METHODS]:
            raise ConfigError(f"sweep file {path}: unknown method {unknown[0]!r}; use {', '.join(METHODS)}")
        if any(size < 1 for size in sweep.sizes):
            raise ConfigError(f"sweep file {path}: sizes must be at least 1")
        if "executor" in sweep.config:
            raise ConfigError(f"sweep file {path}: set the executor at the top level (executor: {{kind: ray}}), "
                              "not under config: (it applies to the whole sweep)")
        return sweep


@dataclass(frozen=True)
class Cell:
    """One point of the sweep."""

    method: str
    variant: str
    model: str
    size: int
    seed: int

    @property
    def name(self) -> str:
        """Directory name, unique and stable."""
        label = self.method if self.method != "treesynth" else f"treesynth-{self.variant}"
        model = "".join(c if c.isalnum() else "-" for c in self.model)
        return f"{label}__{model}__n{self.size}__s{self.seed}"


def cells(sweep: Sweep) -> Iterator[Cell]:
    """Every cell of the cross product, TreeSynth once per variant."""
    for method, model, size, seed in itertools.product(sweep.methods, sweep.models, sweep.sizes, sweep.seeds):
        variants = sweep.treesynth_configs if method == "treesynth" else {"-": {}}
        for variant in variants:
            yield Cell(method, variant, model, size, seed)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def cell_config(sweep: Sweep, cell: Cell, workers: int | None = None) -> RunConfig:
    """The run configuration of a cell (``workers``: its share of the sweep's Ray workers)."""
    raw = _merge(sweep.config, sweep.treesynth_configs.get(cell.variant, {}))
    executor = sweep.executor.model_dump(mode="json", exclude_defaults=True)
    if workers is not None:
        executor["workers"] = workers
    raw = _merge(raw, {"model": {"model": cell.model}, "synthesis": {"samples": cell.size}, "seed": cell.seed,
                       "executor": executor})
    return RunConfig.parse(raw, source=f"sweep cell {cell.name}")


async def run_cell(sweep: Sweep, cell: Cell, out: Path, workers: int | None = None) -> dict[str, Any]:
    """Run (or resume) one cell and return its ``run.json`` summary (``workers``: see :func:`cell_config`)."""
    from treesynth.baselines import Baseline
    from treesynth.pipeline import TreeSynth

    task = Task.from_arg(sweep.task)
    cfg = cell_config(sweep, cell, workers)
    run_json = out / "run.json"
    if run_json.exists():
        done = json.loads(run_json.read_text(encoding="utf-8"))
        if done.get("status") == "complete":
            return dict(done)
    if cell.method == "treesynth":
        return (await TreeSynth(cfg).arun(task, out)).summary
    return (await Baseline(cell.method, cfg).arun(task, out)).summary  # type: ignore[arg-type]


def evaluate_cell(out: Path, embedder_spec: str) -> dict[str, Any]:
    """Diversity metrics of a finished cell (cached in ``<cell>/metrics.json``)."""
    from treesynth.metrics.data import load_dataset
    from treesynth.metrics.embedders import make_embedder
    from treesynth.metrics.report import evaluate

    cached = out / "metrics.json"
    if cached.exists():
        data = json.loads(cached.read_text(encoding="utf-8"))
        if data.get("embedder_spec") == embedder_spec:
            return dict(data)
    result = evaluate([load_dataset(out)], make_embedder(embedder_spec))
    metrics = {"embedder_spec": embedder_spec, **result.to_dict()}
    write_atomic(cached, json.dumps(metrics, indent=2))
    return metrics


def result_row(cell: Cell, summary: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """One line of ``results.jsonl``."""
    dataset = metrics["datasets"][0]
    emb, lex = dataset["embedding"], dataset["lexical"]
    llm = summary["llm"]
    return {
        "cell": cell.name, "method": cell.method, "variant": cell.variant, "model": cell.model, "size": cell.size,
        "seed": cell.seed, "status": summary["status"], "samples": summary["counts"]["samples"],
        "calls": llm["calls"], "prompt_tokens": llm["prompt_tokens"], "completion_tokens": llm["completion_tokens"],
        "cost_usd": llm.get("cost_usd"), "embedder": metrics["embedder"],
        "mean_cosine_distance": emb.get("mean_cosine_distance"), "vendi": emb.get("vendi"),
        "vendi_normalized": emb.get("vendi_normalized"), "near_duplicate_rate": emb.get("near_duplicate_rate"),
        "distinct_2": lex.get("distinct_2"), "self_bleu": lex.get("self_bleu"),
        "calls_per_1000": round(1000 * llm["calls"] / max(1, summary["counts"]["samples"]), 1),
        "tokens_per_1000": round(1000 * (llm["prompt_tokens"] + llm["completion_tokens"])
                                 / max(1, summary["counts"]["samples"])),
    }


OnCell = Callable[[Cell, int, int], None]
"""Told ``(cell, index, cells)`` when a cell starts."""
OnDone = Callable[[Cell, int, int, dict[str, Any]], None]
"""Told ``(cell, index, cells, run.json summary)`` when a cell's run ends."""


def run_sweep(sweep: Sweep, out: Path, on_cell: OnCell | None = None, on_done: OnDone | None = None
              ) -> list[dict[str, Any]]:
    """Run every cell (resuming), evaluate it, and write ``results.jsonl``, ``results.md`` and plots (in cell
    order, however many cells ran at once)."""
    todo = list(cells(sweep))
    if sweep.executor.kind == "ray":
        from treesynth.executors.ray_cluster import fan_out, ray_connected

        with ray_connected(sweep.executor) as cpus:  # once for every cell: a cell's executor leaves Ray running
            spread = fan_out(sweep.executor.workers, cpus, len(todo))
            summaries = run_sync(lambda: _run_cells(sweep, out, todo, (spread.in_flight, spread.workers),
                                                    (on_cell, on_done)))
    else:
        summaries = run_sync(lambda: _run_cells(sweep, out, todo, (1, None), (on_cell, on_done)))
    rows = [result_row(cell, summary, evaluate_cell(out / "cells" / cell.name, sweep.embedder))
            for cell, summary in zip(todo, summaries, strict=True)]
    write_jsonl_atomic(out / "results.jsonl", rows)
    write_atomic(out / "results.md", results_table(rows, sweep))
    plot_results(rows, out)
    return rows


async def _run_cells(sweep: Sweep, out: Path, todo: list[Cell], spread: tuple[int, int | None],
                     tell: tuple[OnCell | None, OnDone | None]) -> list[dict[str, Any]]:
    """Every cell's summary, in order, with at most ``spread[0]`` cells in flight of ``spread[1]`` workers each;
    the first cell that fails cancels the others (each resumes on the next run of the sweep)."""
    in_flight, workers = spread
    on_cell, on_done = tell
    slots = asyncio.Semaphore(in_flight)

    async def one(index: int, cell: Cell) -> dict[str, Any]:
        async with slots:
            if on_cell is not None:
                on_cell(cell, index, len(todo))
            summary = await run_cell(sweep, cell, out / "cells" / cell.name, workers)
            if on_done is not None:
                on_done(cell, index, len(todo), summary)
            return summary

    return await gather_or_cancel(one(index, cell) for index, cell in enumerate(todo))


def results_table(rows: list[dict[str, Any]], sweep: Sweep) -> str:
    """Markdown table of every cell."""
    columns = ["method", "variant", "model", "size", "seed", "status", "samples", "mean_cosine_distance", "vendi",
               "distinct_2", "self_bleu", "calls_per_1000", "tokens_per_1000"]
    lines = [f"# Sweep: {sweep.task}", "", f"Diversity measured with `{rows[0]['embedder'] if rows else '-'}` "
             "(mean cosine distance and Vendi: higher is more diverse; self-BLEU: lower is).", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell_text(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def plot_results(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """``diversity_vs_size.png`` and ``diversity_vs_cost.png`` (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        label = row["method"] if row["method"] != "treesynth" else f"treesynth/{row['variant']}"
        series.setdefault(label, []).append(row)
    written = []
    for name, x_key, x_label in (("diversity_vs_size.png", "size", "samples (n)"),
                                 ("diversity_vs_cost.png", "calls_per_1000", "LLM calls per 1,000 samples")):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for label, points in sorted(series.items()):
            points = sorted(points, key=lambda r: r[x_key])
            ax.plot([p[x_key] for p in points], [p["mean_cosine_distance"] or 0 for p in points], marker="o",
                    label=label)
        ax.set_xlabel(x_label)
        ax.set_ylabel("mean cosine distance (higher = more diverse)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    return written

