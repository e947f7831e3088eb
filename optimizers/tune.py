"""``treesynth tune``: a two-objective Optuna study over the tree shape (dataset diversity vs cost).

Each trial draws depth, width, pivots, samples per call, the leaf and pivot temperatures (and optionally a
compiled program) from a :class:`~treesynth.optimizers.search_space.SearchSpace`, runs the whole pipeline
for ``n`` samples into its own resumable run directory, and returns

1. the diversity of the whole generated set -- the Vendi score or the mean pairwise cosine distance of
   its embeddings (lexical by default), maximized; and
2. its cost -- LLM calls or tokens from the run's ledger, minimized.

A trial whose cost passes the per-trial budget is stopped at the budget and pruned; a partial run is
recorded as infeasible (``shortfall`` constraint). The sampler is TPE, seeded. The study lives in an RDB
storage (SQLite by default; optuna-dashboard opens it) and resumes: trials a killed process left running
are marked failed and re-run with the same parameters, resuming their run directories.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dspy

from treesynth.aio import run_sync
from treesynth.config import Role, RunConfig
from treesynth.errors import ConfigError, TreeSynthError
from treesynth.io import ensure_writable_dir
from treesynth.metrics.embedding import mean_pairwise_cosine_distance, vendi_score
from treesynth.models import Task, stable_hash
from treesynth.optimizers.objectives import TextEmbedding
from treesynth.optimizers.program_io import load_program
from treesynth.optimizers.search_space import NO_PROGRAM, SearchSpace, Suggester
from treesynth.pipeline import Progress, RunResult, TreeSynth
from treesynth.program import TreeSynthProgram

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

Diversity = Literal["vendi", "mean-distance"]
Cost = Literal["calls", "tokens"]
FINISHED = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class TuneOptions:
    """How to tune.

    Attributes:
        trials: Finished (complete or pruned) trials the study should hold; a resumed study runs the rest.
        storage: Optuna storage URL (default: ``sqlite:///<out>/study.db``).
        study_name: Study name (default: derived from the task, base config and objectives).
        seed: Seeds the TPE sampler.
        diversity: ``vendi`` or ``mean-distance`` (mean pairwise cosine distance).
        cost: ``calls`` (LLM calls) or ``tokens`` (prompt + completion).
        budget: Most cost (in ``cost`` units) one trial may spend; ``None`` for no limit.
        embedder: Embedder spec for the diversity (``lexical``: numpy only).
        startup_trials: Random trials before TPE starts modelling.
        space: What trials vary.
    """

    trials: int = 20
    storage: str | None = None
    study_name: str | None = None
    seed: int = 0
    diversity: Diversity = "vendi"
    cost: Cost = "calls"
    budget: int | None = None
    embedder: str = "lexical"
    startup_trials: int = 5
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        """Validate; problems are :class:`ConfigError` naming the fix."""
        if self.trials < 1 or self.startup_trials < 1 or (self.budget is not None and self.budget < 1):
            raise ConfigError("trials, startup trials and budget must be >= 1")
        if self.diversity not in ("vendi", "mean-distance"):
            raise ConfigError(f"unknown diversity {self.diversity!r}; choose vendi or mean-distance")
        if self.cost not in ("calls", "tokens"):
            raise ConfigError(f"unknown cost {self.cost!r}; choose calls or tokens")

    def metric_names(self) -> list[str]:
        """The two objectives' names (stored in the study, shown by optuna-dashboard)."""
        diversity = "Vendi score" if self.diversity == "vendi" else "mean pairwise cosine distance"
        return [f"{diversity} ({self.embedder})", "LLM calls" if self.cost == "calls" else "LLM tokens"]


@dataclass(frozen=True)
class TrialOutcome:
    """What one configuration produced."""

    diversity: float
    cost: float
    status: str
    samples: int
    shortfall: int
    nodes: int
    leaves: int
    calls: int
    tokens: int
    over_budget: bool
    out: str


def dataset_diversity(texts: list[str], kind: Diversity, embedding: TextEmbedding) -> float:
    """Vendi score or mean pairwise cosine distance of ``texts`` (0 for fewer than two)."""
    if len(texts) < 2:
        return 0.0
    vectors = embedding(texts)
    return vendi_score(vectors) if kind == "vendi" else mean_pairwise_cosine_distance(vectors)


def _cost(llm: dict[str, Any], kind: Cost) -> int:
    if kind == "calls":
        return int(llm.get("calls", 0))
    return int(llm.get("prompt_tokens", 0)) + int(llm.get("completion_tokens", 0))


async def _arun_within_budget(pipeline_config: RunConfig, task: Task, out: Path, *, program: TreeSynthProgram | None,
                              lms: dict[Role, dspy.LM] | None, budget: int | None, cost: Cost) -> RunResult | None:
    """Run the pipeline; cancel it (returning ``None``) as soon as this session spends more than ``budget``."""
    over: list[bool] = []
    holder: list[asyncio.Task[RunResult]] = []

    def on_progress(progress: Progress) -> None:
        spent = progress.calls if cost == "calls" else progress.tokens
        if budget is not None and spent > budget and not over:
            over.append(True)
            holder[0].cancel()

    pipeline = TreeSynth(pipeline_config, lms=lms, program=program, on_progress=on_progress, kind="tune-trial")
    holder.append(asyncio.ensure_future(pipeline.arun(task, out)))
    try:
        return await holder[0]
    except (asyncio.CancelledError, BaseExceptionGroup, RuntimeError):
        # once cancelled, the run may also end with task-group errors raised while it unwinds
        if over:
            return None
        raise


@dataclass(frozen=True)
class Measure:
    """How :func:`measure_config` measures a run.

    Attributes:
        budget: Most cost (in ``cost`` units) the run may spend; ``None`` for no limit.
        cost: ``calls`` (LLM calls) or ``tokens`` (prompt + completion).
        diversity: ``vendi`` or ``mean-distance`` (mean pairwise cosine distance).
        embedding: The text embedding of the diversity (default: the lexical one).
    """

    budget: int | None = None
    cost: Cost = "calls"
    diversity: Diversity = "vendi"
    embedding: TextEmbedding | None = None


def measure_config(task: Task, config: RunConfig, out: Path, *, program: TreeSynthProgram | None = None,
                   lms: dict[Role, dspy.LM] | None = None, measure: Measure | None = None) -> TrialOutcome:
    """Run (or resume) ``config`` on ``task`` in ``out`` and measure its diversity and cost."""
    measure = measure or Measure()
    budget, cost = measure.budget, measure.cost
    result = run_sync(lambda: _arun_within_budget(config, task, out, program=program, lms=lms, budget=budget,
                                                  cost=cost))
    if result is None:
        return TrialOutcome(0.0, float(budget or 0), "over budget", 0, config.synthesis.samples, 0, 0, 0, 0, True,
                            str(out))
    texts = [sample.content() for sample in result.samples()]
    llm, counts = result.summary["llm"], result.summary["counts"]
    spent = _cost(llm, cost)
    return TrialOutcome(
        diversity=dataset_diversity(texts, measure.diversity, measure.embedding or TextEmbedding()), cost=float(spent),
        status=result.status, samples=int(counts["samples"]), shortfall=int(counts["shortfall"]),
        nodes=int(counts["nodes"]), leaves=int(counts["leaves"]), calls=int(llm["calls"]),
        tokens=_cost(llm, "tokens"), over_budget=budget is not None and spent > budget, out=str(out))


class TrialObjective:
    """The study's objective: one trial = one configuration drawn from the space, run and measured.

    Plain object built from explicit arguments; call it with an ``optuna.Trial`` (or ``FixedTrial``).
    """

    def __init__(self, task: Task, base: RunConfig, options: TuneOptions, work: Path, *,
                 lms_factory: Any = None) -> None:
        """Trials run under ``work/trials``; ``lms_factory(config)`` may supply LMs (default: from the config)."""
        self.task = task
        self.base = base
        self.options = options
        self.work = work
        self.lms_factory = lms_factory
        self.embedding = TextEmbedding(options.embedder)

    def config_for(self, params: dict[str, Any]) -> RunConfig:
        """The run configuration of drawn ``params``."""
        return self.base.with_overrides(SearchSpace.overrides(params))

    def run_dir(self, params: dict[str, Any]) -> Path:
        """A trial's run directory: keyed by its parameters, so a retried trial resumes the same run."""
        key = stable_hash(self.task.model_dump(mode="json"), self.base.model_dump(mode="json"), params, length=10)
        return self.work / "trials" / f"run-{key}"

    def __call__(self, trial: Suggester) -> tuple[float, float]:
        """Run one trial; over-budget trials raise ``optuna.TrialPruned``."""
        import optuna

        params = self.options.space.suggest(trial)
        config = self.config_for(params)
        program_path = params.get("program", NO_PROGRAM)
        program = None if program_path == NO_PROGRAM else load_program(Path(program_path))
        lms = self.lms_factory(config) if self.lms_factory is not None else None
        measure = Measure(self.options.budget, self.options.cost, self.options.diversity, self.embedding)
        outcome = measure_config(self.task, config, self.run_dir(params), program=program, lms=lms, measure=measure)
        set_attr = getattr(trial, "set_user_attr", None)
        if callable(set_attr):
            for key, value in asdict(outcome).items():
                set_attr(key, value)
        set_constraint = getattr(trial, "set_constraint", None)
        if callable(set_constraint):
            set_constraint("shortfall", float(outcome.shortfall))
        if outcome.over_budget:
            raise optuna.TrialPruned(f"over the budget of {self.options.budget} {self.options.cost}")
        return outcome.diversity, outcome.cost


def default_study_name(task: Task, base: RunConfig, options: TuneOptions) -> str:
    """``treesynth-<hash>`` of what makes trials comparable: task, base config, space, objectives, budget."""
    key = stable_hash(task.model_dump(mode="json"), base.model_dump(mode="json", exclude={"budget"}),  # caps: not
                      options.space.as_dict(),  # part of what trials compare, so a raised cap resumes the study
                      options.metric_names(), options.budget, length=10)
    return f"treesynth-{key}"


@dataclass
class TuneResult:
    """A finished (or resumed) study and where its report went."""

    study_name: str
    storage: str
    metric_names: list[str]
    finished: int
    ran: int
    recovered: int
    files: dict[str, str] = field(default_factory=dict)
    front: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, Any] | None = None


def _storage(url: str) -> Any:
    import optuna

    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def open_study(name: str, url: str, options: TuneOptions) -> optuna.Study:
    """Create or load the study (two directions, seeded TPE) and check it measures the same objectives."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=options.seed, n_startup_trials=options.startup_trials)
    study = optuna.create_study(study_name=name, storage=_storage(url), load_if_exists=True, sampler=sampler,
                                directions=["maximize", "minimize"])
    names = options.metric_names()
    if study.metric_names is not None and list(study.metric_names) != names:
        raise ConfigError(f"study {name!r} in {url} measures {study.metric_names}, not {names}; pass another "
                          "--study or the same --diversity/--cost/--embedder")
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    return study


def recover_stale(study: optuna.Study) -> int:
    """Fail trials a killed process left running and enqueue them again (same parameters); return how many.

    Only one ``tune`` process may work on a study at a time.
    """
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
    return len(stale)


def finished_trials(study: optuna.Study) -> int:
    """Complete and pruned trials."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED)


def tune(task: Task, base: RunConfig, out: Path, options: TuneOptions | None = None, *,
         lms_factory: Any = None) -> TuneResult:
    """Run (or resume) the study until it holds ``options.trials`` finished trials, then write its report.

    Writes under ``out``: ``trials/`` (one run directory per configuration), ``front.md`` and
    ``front.csv`` (the Pareto front), ``front.png`` (front and parameter importances; needs matplotlib)
    and ``chosen.yaml`` (the chosen configuration, usable with ``treesynth run --config``).
    """
    from treesynth.optimizers.report import write_report

    options = options or TuneOptions()
    for program in options.space.programs:  # fail fast on a program that does not fit
        load_program(Path(program))
    ensure_writable_dir(out)
    url = options.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = options.study_name or default_study_name(task, base, options)
    study = open_study(name, url, options)
    study.set_user_attr("task", task.model_dump(mode="json"))
    study.set_user_attr("space", options.space.as_dict())
    recovered = recover_stale(study)
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(options.space.baseline(base), user_attrs={"baseline": True})
    remaining = max(0, options.trials - finished_trials(study))
    if remaining:
        objective = TrialObjective(task, base, options, out, lms_factory=lms_factory)
        study.optimize(objective, n_trials=remaining, catch=(TreeSynthError,))
    result = TuneResult(name, url, options.metric_names(), finished_trials(study), remaining, recovered)
    write_report(study, base, out, result)
    return result
