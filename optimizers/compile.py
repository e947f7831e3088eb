"""Compile the TreeSynth program against per-node diversity objectives with a DSPy optimizer.

:func:`compile_program` grows small trees on the given tasks, turns their nodes into train/val/test
example sets per module (:mod:`treesynth.optimizers.examples`), and for each chosen module measures the
objective on the held-out test nodes, runs the optimizer (instructions only unless ``demos`` > 0: demos in
generation prompts anchor outputs), copies the compiled predictor onto the program and measures again.

This is the one entry point that enters ``dspy.context`` (:func:`~treesynth.providers.context.lm_context`: the
runs' JSON adapter and structured-output state, usage tracking, a call counter);
LMs are passed explicitly. MIPROv2 sets Optuna's log level globally; the previous level is restored
afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import AdapterParseError

from treesynth.aio import run_sync
from treesynth.config import Role, RunConfig
from treesynth.errors import ConfigError
from treesynth.kernel import retry_policy, spending_cap
from treesynth.models import Task
from treesynth.optimizers.examples import GrownTree, Splits, agrow, node_examples, split_examples
from treesynth.optimizers.objectives import NodeObjective, TextEmbedding, make_objective
from treesynth.optimizers.program_io import instructions
from treesynth.optimizers.stages import COMPILABLE, CallTally, NodeStage, StageRuntime, copy_compiled
from treesynth.program import TreeSynthProgram
from treesynth.providers import StructuredOutputs, make_role_lms
from treesynth.providers.context import lm_context
from treesynth.record import Ledger, RunRecord, Timings, write_record
from treesynth.summary import versions

logger = logging.getLogger(__name__)

Optimizer = Literal["gepa", "mipro", "bootstrap"]
OPTIMIZERS: tuple[Optimizer, ...] = ("gepa", "mipro", "bootstrap")


@dataclass(frozen=True)
class CompileOptions:
    """How to compile.

    Attributes:
        optimizer: ``gepa`` (reflective instruction evolution; the default), ``mipro`` (MIPROv2) or
            ``bootstrap`` (BootstrapFewShot: demos only, so it needs ``demos`` ≥ 1).
        modules: Which modules to compile (``criterion``, ``coverage``, ``leaf``).
        budget: GEPA: metric calls per module; MIPROv2: trials per module. ``None`` picks a small default.
        demos: Few-shot demos per predictor (0 = instructions only).
        draws: Examples (seeds) per node.
        threads: Optimizer threads, and concurrent calls when measuring.
        seed: Seeds the split and the optimizer.
        embedder: Embedder spec for the objectives (default ``lexical``: numpy only).
        fractions: Train/val/test shares of the nodes.
        min_improvement: A module keeps its compiled predictor only if the optimizer's own validation
            score beats the uncompiled one by more than this (never decided on the test nodes).
    """

    optimizer: Optimizer = "gepa"
    modules: tuple[Role, ...] = COMPILABLE
    budget: int | None = None
    demos: int = 0
    draws: int = 1
    threads: int = 2
    seed: int = 0
    embedder: str = "lexical"
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    min_improvement: float = 0.0

    def __post_init__(self) -> None:
        """Validate; problems are :class:`ConfigError` naming the fix."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
        if bad := [m for m in self.modules if m not in COMPILABLE]:
            raise ConfigError(f"cannot compile module(s) {bad}; choose from {', '.join(COMPILABLE)}")
        if not self.modules:
            raise ConfigError("no module to compile; pass at least one of " + ", ".join(COMPILABLE))
        if self.optimizer == "bootstrap" and self.demos < 1:
            raise ConfigError("the bootstrap optimizer only adds few-shot demos: pass --demos N (N >= 1), or use "
                              "gepa or mipro to compile instructions")
        if self.demos < 0 or self.draws < 1 or self.threads < 1 or (self.budget is not None and self.budget < 1):
            raise ConfigError("demos must be >= 0 and draws, threads and budget >= 1")


@dataclass
class ModuleReport:
    """Before/after of one module on its held-out test nodes."""

    module: str
    train: int
    val: int
    test: int
    before: float | None = None
    after: float | None = None
    kept: bool = False
    changed: list[str] = field(default_factory=list)
    instruction: str = ""
    calls: int = 0
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def delta(self) -> float | None:
        """``after − before`` (``None`` when the module was skipped)."""
        return None if self.before is None or self.after is None else self.after - self.before


@dataclass
class CompileReport:
    """What a compile did: the grown trees, each module's before/after, calls and time."""

    optimizer: str
    tasks: list[str]
    model: str
    grow: dict[str, Any] = field(default_factory=dict)
    modules: dict[str, ModuleReport] = field(default_factory=dict)
    calls: int = 0
    seconds: float = 0.0

    def improved(self) -> list[str]:
        """Modules whose held-out score went up."""
        return [name for name, m in self.modules.items() if m.delta is not None and m.delta > 0]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in the program file)."""
        data = asdict(self)
        for name, module in self.modules.items():
            data["modules"][name]["delta"] = module.delta
        return data


@dataclass(frozen=True)
class CompileResult:
    """The compiled program and its report."""

    program: TreeSynthProgram
    report: CompileReport


class LMCallCounter(BaseCallback):
    """A DSPy callback counting LM calls (module calls, reflection, proposals) made inside its context."""

    def __init__(self) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.calls = 0

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Count one call."""
        with self._lock:
            self.calls += 1


@dataclass(frozen=True)
class _Session:
    """Everything one compile shares across modules."""

    program: TreeSynthProgram
    runtime: StageRuntime
    lms: dict[Role, dspy.LM]
    reflection_lm: dspy.LM
    embedding: TextEmbedding
    options: CompileOptions
    counter: LMCallCounter


def measure(stage: dspy.Module, examples: Sequence[dspy.Example], objective: NodeObjective, runtime: StageRuntime,
            *, concurrency: int = 2) -> float:
    """Mean objective score of a :class:`NodeStage` (or a compiled copy) over ``examples``.

    Calls run concurrently on ``runtime``'s loop and gateway (at most ``concurrency`` at once); failed or
    unparseable answers score 0. Raises the :class:`~treesynth.errors.ProviderError` that stopped the gateway.
    """
    import asyncio

    async def one(example: dspy.Example, slots: asyncio.Semaphore) -> float:
        async with slots:
            try:
                pred = await stage.acall(**example.inputs())
            except AdapterParseError:
                pred = None
        return objective.safe_judge(example, pred).score

    async def run() -> list[float]:
        slots = asyncio.Semaphore(concurrency)
        try:
            async with asyncio.TaskGroup() as calls:  # one stopped call cancels the rest
                tasks = [calls.create_task(one(example, slots)) for example in examples]
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        return [task.result() for task in tasks]

    scores = runtime.run(run())
    return sum(scores) / len(scores) if scores else 0.0


def _default_budget(options: CompileOptions, splits: Splits) -> int:
    if options.optimizer == "mipro":
        return 6
    return max(3 * (len(splits.train) + len(splits.val)), len(splits.val) + 8 * min(3, len(splits.train)))


def _gepa(stage: NodeStage, splits: Splits, objective: NodeObjective, session: _Session, budget: int) -> dspy.Module:
    optimizer = dspy.GEPA(metric=objective, max_metric_calls=budget, reflection_lm=session.reflection_lm,
                          reflection_minibatch_size=min(3, len(splits.train)), num_threads=session.options.threads,
                          seed=session.options.seed, use_merge=False, warn_on_score_mismatch=False)
    compiled: dspy.Module = optimizer.compile(stage, trainset=splits.train, valset=splits.val)
    return compiled


@contextmanager
def _optuna_log_level_kept() -> Iterator[None]:
    """MIPROv2 sets Optuna's global log level; put the previous one back."""
    import optuna

    level = optuna.logging.get_verbosity()
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _mipro(stage: NodeStage, splits: Splits, objective: NodeObjective, session: _Session, budget: int
           ) -> dspy.Module:
    options = session.options
    optimizer = dspy.MIPROv2(metric=objective.scalar, prompt_model=session.reflection_lm,
                             task_model=session.lms[stage.role], auto=None, num_candidates=max(2, budget // 2),
                             max_bootstrapped_demos=options.demos, max_labeled_demos=0, num_threads=options.threads,
                             seed=options.seed, verbose=False, track_stats=False)
    with _optuna_log_level_kept():
        compiled: dspy.Module = optimizer.compile(stage, trainset=splits.train, valset=splits.val, num_trials=budget,
                                                  minibatch=len(splits.val) > 35)
    return compiled


def _bootstrap(stage: NodeStage, splits: Splits, objective: NodeObjective, session: _Session, budget: int
               ) -> dspy.Module:
    """Demos from the module's own traces that score >= 0.5; where there are too few, and the examples carry
    the module's output as a label (coverage: the node's real remaining values), labeled demos fill in."""
    labeled = session.options.demos if all(objective.output in example for example in splits.train) else 0
    optimizer = dspy.BootstrapFewShot(metric=objective.scalar, metric_threshold=0.5,
                                      max_bootstrapped_demos=session.options.demos, max_labeled_demos=labeled,
                                      max_rounds=1)
    compiled: dspy.Module = optimizer.compile(stage, trainset=splits.train)
    return compiled


_RUNNERS: dict[str, Callable[[NodeStage, Splits, NodeObjective, _Session, int], dspy.Module]] = {
    "gepa": _gepa, "mipro": _mipro, "bootstrap": _bootstrap}


def _compile_module(module: Role, examples: list[dspy.Example], session: _Session) -> ModuleReport:
    options = session.options
    splits = split_examples(examples, seed=options.seed, fractions=options.fractions)
    report = ModuleReport(module, len(splits.train), len(splits.val), len(splits.test))
    if not (splits.train and splits.val and splits.test):
        report.skipped = f"too few nodes ({len(examples)} examples; need 3 nodes or more)"
        return report
    started, calls_before = time.perf_counter(), session.counter.calls
    stage = NodeStage(session.program, module, session.runtime)
    objective = make_objective(module, session.embedding)
    runtime = session.runtime
    with dspy.context(lm=session.lms[module]):
        report.before = measure(stage, splits.test, objective, runtime, concurrency=options.threads)
        val_before = measure(stage, splits.val, objective, runtime, concurrency=options.threads)
        compiled = _RUNNERS[options.optimizer](stage, splits, objective, session,
                                               options.budget or _default_budget(options, splits))
        runtime.raise_if_stopped()  # optimizers score a failed call low and go on; a stopped gateway ends here
        val_after = measure(compiled, splits.val, objective, runtime, concurrency=options.threads)
        report.kept = val_after > val_before + options.min_improvement
        if report.kept:
            report.changed = copy_compiled(compiled, session.program)
        report.after = measure(stage, splits.test, objective, runtime, concurrency=options.threads)
    report.instruction = next(iter(instructions(stage.module).values()))
    report.calls = session.counter.calls - calls_before
    report.seconds = time.perf_counter() - started
    logger.info("compiled %s: held-out %.3f -> %.3f (val %.3f -> %.3f, kept=%s)", module, report.before,
                report.after, val_before, val_after, report.kept)
    return report


def _grow_summary(grown: list[GrownTree], seconds: float) -> dict[str, Any]:
    return {"trees": len(grown), "nodes": sum(g.tree.node_count() for g in grown),
            "leaves": sum(1 for g in grown for _ in g.tree.root.leaves()),
            "samples": sum(len(g.samples) for g in grown), "calls": sum(g.calls for g in grown),
            "tokens": sum(g.tokens for g in grown), "seconds": round(seconds, 2)}


def compile_program(tasks: Sequence[Task], config: RunConfig, work: Path, options: CompileOptions | None = None, *,
                    lms: dict[Role, dspy.LM] | None = None, reflection_lm: dspy.LM | None = None,
                    program: TreeSynthProgram | None = None) -> CompileResult:
    """Grow trees on ``tasks`` (run directories under ``work``, resumable) and compile ``program``.

    Args:
        tasks: Tasks whose trees provide the node examples.
        config: Run configuration for growing the trees (keep it small) and for the module calls.
        work: Directory for the grown runs.
        options: Optimizer, modules, budget... (see :class:`CompileOptions`).
        lms: LM per role; built from ``config.model`` when omitted.
        reflection_lm: The LM that proposes instructions (GEPA, MIPROv2); defaults to the leaf role's LM.
        program: The program to compile (modified in place); a fresh one when omitted.
    """
    options = options or CompileOptions()
    started = time.perf_counter()
    program = program or TreeSynthProgram()
    lms = lms or make_role_lms(config.model)
    model = config.model
    structured = StructuredOutputs.from_config(model)  # the dialect per model, for every measuring call
    runtime = StageRuntime(lms, retry_policy(model), CallTally(), structured, concurrency=max(1, options.threads),
                           cap=spending_cap(config))
    session = _Session(program, runtime, lms, reflection_lm or lms["leaf"], TextEmbedding(options.embedder), options,
                       LMCallCounter())
    report = CompileReport(options.optimizer, [t.description for t in tasks], str(lms["leaf"].model))
    with lm_context(structured, callbacks=[session.counter], disable_history=False), runtime:  # MIPROv2 reads history
        grown = run_sync(lambda: agrow(tasks, config, work, lms=lms, program=program.deepcopy()))
        report.grow = _grow_summary(grown, time.perf_counter() - started)
        sets = node_examples(grown, draws=options.draws)
        for module in options.modules:
            report.modules[module] = _compile_module(module, sets[module], session)
    report.calls = session.counter.calls  # every LM call: growing, measuring, optimizing
    report.seconds = round(time.perf_counter() - started, 2)
    _write_record(work, config, report, runtime.tally)
    return CompileResult(program, report)


def _write_record(work: Path, config: RunConfig, report: CompileReport, tally: CallTally) -> None:
    """``work/run.json``: the compile as a :class:`~treesynth.record.RunRecord` of kind ``compile``.

    Its ledger counts the measuring and optimizing calls; each grown tree's own ``run.json`` counts its calls.
    """
    calls = tally.snapshot()
    ledger = Ledger(calls=calls["calls"], failed=calls["failed"], prompt_tokens=calls["prompt_tokens"],
                    completion_tokens=calls["completion_tokens"])
    timings = Timings(seconds_this_session=report.seconds, seconds_total=report.seconds)
    record = RunRecord(kind="compile", status="complete", timings=timings, llm=ledger,
                       config=config.model_dump(mode="json"), versions=versions(), report=report.as_dict())
    write_record(work, record)
