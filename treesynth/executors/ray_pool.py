"""The ray executor's driver side: the cluster connection, the limits board actor, the worker pool and the
caller that sends leaf calls to it.

Work items go out in batches (the calls issued in the same event-loop turn, per source, split evenly over
the workers) to the workers with the fewest calls outstanding, and come back one by one as they finish (a
streaming actor method). A worker that dies (its process killed, its node lost) is restarted by Ray; the calls
it had not answered are sent again -- to whichever worker is least loaded -- so at-least-once execution gives
exactly-once results: only the driver writes the store, once per ``(leaf_id, call_index)``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from treesynth.config import ROLES, RunConfig
from treesynth.errors import ConfigError, ProviderError
from treesynth.executors.ray_worker import LeafWorker, Outcome, SourceSpec, board_limiters
from treesynth.models import Task, stable_hash
from treesynth.providers.gateway import CallRecord, Gateway
from treesynth.providers.limiter import Limiter
from treesynth.providers.limits import LimitsBoard
from treesynth.store import Candidate
from treesynth.synthesis.caller import LeafCall, LeafCaller, SampleSource, SourceCaller, SynthesisSource
from treesynth.tree.routing import RouteCaller, SampleRouter

NAMESPACE = "treesynth"
MAX_BATCH = 64
"""Most calls sent to a worker in one batch."""
MAX_LOST = 3
"""A call whose worker died this many times stops the run (a worker that crashes on it, not a lost node)."""
FORWARDED_ENV = ("LITELLM_LOCAL_MODEL_COST_MAP", "HF_HUB_OFFLINE", "DSPY_CACHEDIR", "TREESYNTH_CACHE_DIR",
                 "TREESYNTH_FAKE_LATENCY_MS", "TREESYNTH_FAKE_HOLD")
"""Settings handed to the workers besides the model's provider keys and ``executor.env``."""
RAY_EXTRA_HINT = "install the ray extra: pip install 'treesynth[ray]'"


def worker_env(config: RunConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the workers get through Ray's ``runtime_env`` (in memory, never written by treesynth):
    every variable of the run's providers (``OPENAI_*`` for ``openai/...``, ``ANTHROPIC_*``...), ``AWS_*`` for
    Bedrock and SageMaker, :data:`FORWARDED_ENV` and the names in ``executor.env``."""
    environ = dict(os.environ) if environ is None else environ
    models = {config.model.model_for(role) for role in ROLES} | {config.model.model}
    prefixes = {_provider_prefix(str(model)) for model in models if model} - {""}
    names = set(FORWARDED_ENV) | set(config.executor.env)
    names |= {name for name in environ if any(name.startswith(prefix) for prefix in prefixes)}
    return {name: environ[name] for name in sorted(names) if name in environ}


def _provider_prefix(model: str) -> str:
    """The environment prefix of ``model``'s provider (``""`` for in-process models)."""
    provider, _, name = model.partition("/")
    if not name or provider in ("local", "test"):
        return ""
    if provider in ("bedrock", "sagemaker"):
        return "AWS_"
    return provider.upper().replace("-", "_") + "_"


def connect_ray(address: str | None) -> bool:
    """Connect to the Ray cluster at ``address`` (``None``: start a local instance) unless this process already is;
    whether this call connected (then its caller shuts Ray down when done). A usage error when Ray is missing or
    the cluster cannot be reached."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray: {RAY_EXTRA_HINT}") from None
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address} ({exc}); start it with "
                          "`ray start --head` or fix --ray-address") from None
    return True


@dataclass
class _Item:
    spec: SourceSpec
    call: LeafCall
    future: asyncio.Future[Outcome]
    lost: int = 0


@dataclass
class WorkerPool:
    """Leaf-call workers (Ray actor handles) and the calls each has outstanding."""

    actors: list[Any]
    load: list[int] = field(default_factory=list)
    resent: int = 0
    """Calls sent again because their worker died."""
    _pending: list[_Item] = field(default_factory=list)
    _turn: int = 0
    _streams: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        """Start with nothing outstanding."""
        self.load = [0] * len(self.actors)

    async def run(self, spec: SourceSpec, call: LeafCall) -> Outcome:
        """Make ``call`` on a worker; its outcome."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._submit(_Item(spec, call, future))
        return await future

    def _submit(self, item: _Item) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)  # every call issued in this turn goes in one batch
        self._pending.append(item)

    def _flush(self) -> None:
        pending, self._pending = [i for i in self._pending if not i.future.done()], []
        by_spec: dict[str, list[_Item]] = {}
        for item in pending:
            by_spec.setdefault(item.spec.key, []).append(item)
        for items in by_spec.values():  # spread over the workers: one batch each, at most MAX_BATCH calls
            size = min(MAX_BATCH, -(-len(items) // len(self.actors)))
            for start in range(0, len(items), size):
                batch = items[start:start + size]
                worker = self._least_loaded()
                self.load[worker] += len(batch)
                stream = asyncio.get_running_loop().create_task(self._stream(worker, batch))
                self._streams.add(stream)
                stream.add_done_callback(self._streams.discard)

    def _least_loaded(self) -> int:
        """The worker with the fewest calls outstanding; ties go round-robin (so idle workers take turns)."""
        count = len(self.actors)
        self._turn = (self._turn + 1) % count
        return min(((self._turn + step) % count for step in range(count)), key=self.load.__getitem__)

    async def _stream(self, worker: int, batch: list[_Item]) -> None:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        answered: set[int] = set()
        try:
            generator = self.actors[worker].run.options(num_returns="streaming").remote(
                batch[0].spec, [item.call for item in batch])
            async for ref in generator:
                index, wire = await ref
                answered.add(index)
                self.load[worker] -= 1
                if not batch[index].future.done():
                    batch[index].future.set_result(Outcome.from_wire(wire))
        except (ActorDiedError, ActorUnavailableError, RayActorError) as lost:  # its calls go to a live worker
            for index, item in enumerate(batch):
                if index in answered or item.future.done():
                    continue
                self.load[worker] -= 1
                item.lost += 1
                if item.lost >= MAX_LOST:
                    item.future.set_exception(ProviderError(
                        f"the Ray worker making leaf call {item.call.work.call_index} of leaf {item.call.work.leaf_id} "
                        f"died {item.lost} times ({type(lost).__name__}); check the workers' logs (ray logs), then "
                        "re-run the same command to resume"))
                else:
                    self.resent += 1
                    self._submit(item)
        except Exception as error:  # a bug in a worker: every call of the batch fails with it
            for index, item in enumerate(batch):
                if index not in answered:
                    self.load[worker] -= 1
                    if not item.future.done():
                        item.future.set_exception(error)

    async def aclose(self) -> None:
        """Stop streaming (calls still out are abandoned: their items were not written)."""
        for stream in list(self._streams):
            stream.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)


class Remote(Protocol):
    """What a worker sends back for one call: the call's ledger record and a reason the run must stop."""

    @property
    def record(self) -> CallRecord | None:
        """The worker gateway's record of the call (``None``: the call never finished)."""
        ...

    @property
    def stop(self) -> str | None:
        """The message of a provider error that stops the run."""
        ...


R = TypeVar("R", bound=Remote)


async def booked(gateway: Gateway, make: Callable[[], Awaitable[R]]) -> R:
    """A call made on a worker, under the driver's ``gateway``: reserved under its spending caps first, its record
    booked in its ledger after (the reservation given back when there is none), its stop raised."""
    await gateway.admit()
    try:
        outcome = await make()
    except BaseException:
        gateway.cap.release()
        raise
    if outcome.record is not None:
        gateway.book(outcome.record)
    else:
        gateway.cap.release()
    if outcome.stop is not None:
        raise ProviderError(outcome.stop)
    return outcome


class RemoteCaller:
    """Sends a source's leaf calls to the pool; books each on the driver's gateway (ledger and spending caps)."""

    def __init__(self, pool: WorkerPool, spec: SourceSpec, gateway: Gateway) -> None:
        """Wire a caller; see the class docstring."""
        self.pool, self.spec, self.gateway, self.stage = pool, spec, gateway, spec.stage

    async def __call__(self, call: LeafCall) -> list[Candidate] | None:
        """One leaf call on a worker (raises :class:`ProviderError` when the worker's gateway stopped the run)."""
        outcome = await booked(self.gateway, lambda: self.pool.run(self.spec, call))
        return outcome.candidates


class RayExecutor:
    """Leaf calls on Ray actors (see the module docstring). Use through :func:`~treesynth.executors.open_executor`."""

    kind = "ray"

    def __init__(self, config: RunConfig) -> None:
        """Prepare (nothing starts before :meth:`start`)."""
        self.config = config
        self.run_id = uuid.uuid4().hex[:12]
        self.pool = WorkerPool([])
        self._board: Any = None
        self._started_ray = False

    async def start(self) -> None:
        """Connect to (or start) Ray; start the limits board and the workers (they build their LMs meanwhile)."""
        settings = self.config.executor
        self._started_ray = connect_ray(settings.address)
        import ray

        model = self.config.model
        board_name = f"treesynth-limits-{self.run_id}"
        board = ray.remote(LimitsBoard).options(name=board_name, namespace=NAMESPACE, num_cpus=0, max_concurrency=1)
        self._board = board.remote(self.config.concurrency, model.failure_limit)
        total = float(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        workers = settings.workers or max(1, int(total))
        cpus = min(1.0, max(0.01, total / workers))
        actor = ray.remote(LeafWorker).options(
            num_cpus=cpus, max_restarts=-1, max_task_retries=0, max_concurrency=4096, scheduling_strategy="SPREAD",
            runtime_env={"env_vars": worker_env(self.config)}, namespace=NAMESPACE)
        config = self.config.model_dump(mode="json")
        self.pool = WorkerPool([actor.remote(config, board_name, NAMESPACE, f"worker-{i}") for i in range(workers)])
        for worker in self.pool.actors:  # while the driver grows the tree (Ray runs a call whose ref is dropped)
            worker.warm_up.remote()

    def limiters(self) -> Callable[[str], Limiter] | None:
        """Shared limiters for the driver's gateway: tree building counts against the cluster's one limit."""
        return board_limiters(self._board, "driver", self.config.concurrency)

    def leaf_caller(self, source: SampleSource, gateway: Gateway, task: Task, stage: str) -> LeafCaller:
        """Leaf calls of ``source`` on the workers; a source that reads the driver's store (evol) stays local."""
        if not isinstance(source, SynthesisSource):
            return SourceCaller(source, gateway, task, stage)
        state = source.module.dump_state()
        spec = SourceSpec(key=stable_hash(task.model_dump_json(), repr(state), stage),
                          task=task.model_dump(mode="json"), leaf_state=state, stage=stage)
        return RemoteCaller(self.pool, spec, gateway)

    def route_caller(self, module: SampleRouter, gateway: Gateway, task: Task) -> RouteCaller:
        """Balance's routing calls on the workers (see :mod:`treesynth.executors.ray_routing`)."""
        from treesynth.executors.ray_routing import RemoteRouteCaller, RouteSpec

        return RemoteRouteCaller(self.pool.actors, RouteSpec.of(module, task), gateway)

    async def board_stats(self) -> dict[str, Any]:
        """The limits board's state (per model: limit, overloads, per worker shares and held attempts)."""
        stats: dict[str, Any] = await self._board.stats.remote()
        return stats

    async def worker_places(self) -> list[tuple[int, str]]:
        """Each worker's process id and Ray node id."""
        places = await asyncio.gather(*(actor.where.remote() for actor in self.pool.actors))
        return [(int(pid), str(node)) for pid, node in places]

    async def aclose(self) -> None:
        """Stop the streams, the workers and the board; shut Ray down if this executor started it."""
        import ray

        await self.pool.aclose()
        for actor in [*self.pool.actors, self._board]:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        if self._started_ray:
            ray.shutdown()
