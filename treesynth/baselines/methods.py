"""Temperature sampling, Evol-Instruct and Persona-Hub-style synthesis as DSPy modules.

Every baseline runs through the same machinery as TreeSynth's leaves (keyed resumable calls, per-call
seeds, global normalized dedup, top-up to exactly ``n``) and writes the same run directory, so sweeps
compare methods and nothing else:

* ``temperature`` -- one task prompt, high temperature, a distinct rollout per call;
* ``evol`` -- Evol-Instruct: a few seed samples, then each call evolves an accepted sample in depth
  (add constraints, deepen, concretize, more reasoning steps) or in breadth (a new, rarer sample);
* ``persona`` -- Persona Hub: personas are generated (or read from a file), then each sample is
  written for a distinct persona (the tree's root splits by persona, one leaf per persona).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import dspy

from treesynth.aio import gather_or_cancel, run_sync
from treesynth.config import Role, RunConfig
from treesynth.errors import ConfigError
from treesynth.io import iter_lines, json_record
from treesynth.kernel import RunSession
from treesynth.models import LeafWork, Node, Task, normalize, stable_seed
from treesynth.pipeline import RunResult, export_run
from treesynth.providers import Gateway
from treesynth.signatures import EvolveSample, GeneratePersonas, sample_batch_type, shaped
from treesynth.signatures.baselines import PERSONA_ITEM
from treesynth.store import RunStore
from treesynth.synthesis.allocate import LeafPlanner, allocate
from treesynth.synthesis.filler import Leaf, LeafFiller, SynthesisSource
from treesynth.synthesis.leaf import LeafSynthesizer
from treesynth.tree.builder import child_id, leaf_paths

Method = Literal["temperature", "evol", "persona"]
METHODS: tuple[Method, ...] = ("temperature", "evol", "persona")
EVOL_OPERATIONS = (
    "Add one more constraint or requirement to it.",
    "Make it deeper: ask for more thorough reasoning or knowledge.",
    "Replace general concepts with more specific, concrete ones.",
    "Make it require more reasoning steps.",
    "Write a brand-new sample in the same domain but on a rarer, long-tail topic (in-breadth evolution).",
)
SEED_POOL = 5
"""Samples generated plainly before Evol-Instruct starts evolving."""
PERSONA_BATCH = 10


class Evolver(dspy.Module):
    """Evol-Instruct's evolution step. Owns its predictor once (compilable)."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.evolve = dspy.Predict(EvolveSample)

    async def aforward(self, task: str, sample: str, operation: str, count: int, **call: Any) -> dspy.Prediction:
        """Return ``Prediction(samples=[...])``: ``count`` evolutions of ``sample``."""
        signature = shaped(self.evolve.signature, "batch", sample_batch_type(count))
        pred = await self.evolve.acall(signature=signature, task=task, sample=sample, operation=operation, **call)
        return dspy.Prediction(samples=[str(s) for s in pred.batch.samples])


class PersonaWriter(dspy.Module):
    """Persona Hub's persona generation step. Owns its predictor once (compilable)."""

    def __init__(self) -> None:
        """Create the module and its single predictor."""
        super().__init__()
        self.generate = dspy.Predict(GeneratePersonas)

    async def aforward(self, task: str, avoid: list[str], count: int, **call: Any) -> dspy.Prediction:
        """Return ``Prediction(personas=[...])`` with ``count`` personas."""
        signature = shaped(self.generate.signature, "personas", sample_batch_type(count, item=PERSONA_ITEM))
        pred = await self.generate.acall(signature=signature, task=task, avoid=avoid, **call)
        return dspy.Prediction(personas=[str(p) for p in pred.personas.samples])


class _EvolSource:
    """Plain samples until the seed pool exists, then evolutions of accepted samples chosen by seed."""

    def __init__(self, evolver: Evolver, plain: SynthesisSource, store: RunStore, task: Task) -> None:
        self.evolver, self.plain, self.store, self.task = evolver, plain, store, task

    async def __call__(self, work: LeafWork, subspace: list[str], avoid: list[str], lm: Any,
                       config: dict[str, Any]) -> Any:
        pool = self.store.recent_samples(work.leaf_id, 200)
        if len(pool) < SEED_POOL:
            return await self.plain(work, subspace, avoid, lm, config)
        parent = pool[work.seed % len(pool)]
        operation = EVOL_OPERATIONS[stable_seed(work.seed, "op") % len(EVOL_OPERATIONS)]
        return await self.evolver.acall(task=self.task.description, sample=str(parent.get("text", "")),
                                        operation=operation, count=work.count, lm=lm, config=config)


class Baseline:
    """Run one baseline method for a task into a run directory (resumable, exactly ``n`` samples).

    Args:
        method: ``temperature``, ``evol`` or ``persona``.
        config: Run configuration; ``synthesis.samples`` is ``n``. Baselines make one sample per call
            (a distinct rollout per sample), whatever ``samples_per_call`` says.
        lms: Optional LM per role; built from ``config.model`` when omitted.
        temperature: Sampling temperature of the baseline's generation calls.
        personas: Optional persona list (Persona Hub); generated when omitted.
    """

    def __init__(self, method: Method, config: RunConfig | None = None, *, lms: dict[Role, dspy.LM] | None = None,
                 temperature: float = 1.2, personas: list[str] | None = None) -> None:
        """Create a baseline runner; see the class docstring."""
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)} or treesynth")
        base = config or RunConfig()
        self.method = method
        self.config = base.with_overrides({"synthesis.samples_per_call": 1,
                                           "model.roles.leaf.temperature": temperature})
        self.lms = lms
        self.personas = personas
        self.synthesizer = LeafSynthesizer()
        self.evolver = Evolver()
        self.persona_writer = PersonaWriter()

    def run(self, task: Task | str, out: Path | str) -> RunResult:
        """Sync facade over :meth:`arun`."""
        return run_sync(lambda: self.arun(task, out))

    async def arun(self, task: Task | str, out: Path | str) -> RunResult:
        """Run (or resume) the baseline into ``out``."""
        task = task if isinstance(task, Task) else Task.from_arg(task)
        cfg = self.config
        identity = {"task": task.model_dump(mode="json"), "method": self.method, "seed": cfg.seed,
                    "samples": cfg.synthesis.samples}
        async with RunSession.open(Path(out), identity, cfg, kind="baseline", lms=self.lms) as session:
            gateway, store = session.gateway, session.store
            root = await self._tree(task, gateway, store)
            quotas = allocate({leaf.id: 1.0 for leaf in root.leaves()}, cfg.synthesis.samples)
            await self._fill(task, root, quotas, session)
            return export_run(session, root, task, quotas, None, method=self.method)

    async def _tree(self, task: Task, gateway: Gateway, store: RunStore) -> Node:
        root = Node(id="root", depth=0)
        if self.method != "persona":
            root.leaf_reason = f"{self.method} baseline: no partition"
            return root
        personas = await self._personas(task, gateway, store)
        root.criterion = "persona"
        root.children = [Node(id=child_id("root", "persona", p), depth=1, value=p, parent_criterion="persona")
                         for p in personas]
        return root

    async def _personas(self, task: Task, gateway: Gateway, store: RunStore) -> list[str]:
        wanted = self.config.synthesis.samples
        personas: list[str] = list(self.personas or store.get_meta("personas") or [])
        stalled = 0  # rounds since the list last grew: with its length, it seeds the round (so a resume repeats it)
        for _ in range(2 * (wanted // PERSONA_BATCH + 1)):
            if len(personas) >= wanted or self.personas:
                break
            count = min(PERSONA_BATCH, wanted - len(personas))

            async def run(lm: Any, config: dict[str, Any], count: int = count) -> Any:
                return await self.persona_writer.acall(task=task.description, avoid=personas[-20:], count=count,
                                                       lm=lm, config=config)

            pred = await gateway.call("pivots", stage="personas", node_id="root",
                                      seed=stable_seed(self.config.seed, "personas", len(personas), stalled),
                                      fn=run)
            seen, before = {normalize(p) for p in personas}, len(personas)
            for persona in pred.personas if pred is not None else []:
                if normalize(persona) and normalize(persona) not in seen:
                    seen.add(normalize(persona))
                    personas.append(persona.strip())
            stalled = 0 if len(personas) > before else stalled + 1
            store.set_meta("personas", personas)
        if not personas:
            raise ConfigError("no personas could be generated; pass a persona file or another --model")
        return personas[:wanted]

    async def _fill(self, task: Task, root: Node, quotas: dict[str, int], session: RunSession) -> None:
        plain = SynthesisSource(self.synthesizer, task)
        total = self.config.synthesis.samples
        if self.method == "evol":  # the seed pool first, then evolutions of it
            await self._fill_to(min(total, SEED_POOL), plain, root, task, session)
            await self._fill_to(total, _EvolSource(self.evolver, plain, session.store, task), root, task, session)
        else:
            await self._fill_to(total, plain, root, task, session)

    async def _fill_to(self, total: int, source: Any, root: Node, task: Task, session: RunSession) -> None:
        store = session.store
        planner = LeafPlanner(total=total, level_weight=1.0, max_depth=0)
        paths = leaf_paths(root)
        for leaf_id in paths:
            await planner.resolve(leaf_id, 1.0, have=store.leaf_sample_count(leaf_id),
                                  exhausted_at=store.exhausted_at(leaf_id))
        await planner.finish_tree()
        filler = LeafFiller(session.leaf_caller(source, task, self.method), store, planner, task, self.config,
                            on_progress=lambda: None)
        await gather_or_cancel(filler.fill(Leaf(leaf_id, path)) for leaf_id, path in paths.items())


def read_personas(path: Path) -> list[str]:
    """Personas from a text file (one per line) or JSONL (``persona`` or ``text`` field)."""
    personas: list[str] = []
    for lineno, line in iter_lines(path):
        if line.lstrip().startswith("{"):
            record = json_record(path, lineno, line)
            line = str(record.get("persona") or record.get("text") or "")
        personas.append(line.strip())
    if not personas:
        raise ConfigError(f"{path}: no personas; write one per line")
    return personas

