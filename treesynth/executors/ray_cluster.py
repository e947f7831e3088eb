"""One Ray connection for several runs (a bench sweep's cells in flight).

Each run's :class:`~treesynth.executors.ray_pool.RayExecutor` starts its own limits board and workers and shuts
Ray down only if it started it; :func:`ray_connected` initializes Ray once around all of them, so the first
cell to finish does not take Ray away from the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from treesynth.config import ExecutorConfig
from treesynth.executors.ray_pool import connect_ray


@dataclass(frozen=True)
class FanOut:
    """How a sweep spreads over the cluster: runs in flight at once and Ray workers per run."""

    in_flight: int
    workers: int


def fan_out(workers: int | None, cpus: int, runs: int) -> FanOut:
    """Share ``workers`` (default: the cluster's ``cpus``) over ``runs``: as many runs in flight as there are
    workers (at most ``runs``), each with an equal share of them (one at least)."""
    total = max(1, workers or cpus)
    in_flight = max(1, min(runs, total))
    return FanOut(in_flight=in_flight, workers=max(1, total // in_flight))


@contextmanager
def ray_connected(settings: ExecutorConfig) -> Iterator[int]:
    """Connect to (or start) the Ray cluster of ``settings`` for the block; yield its CPU count. Ray is shut down
    after the block only if this call started it (a caller's own ``ray.init`` stays)."""
    started = connect_ray(settings.address)
    import ray

    cluster: Any = ray  # untyped in Ray's stubs
    try:
        yield max(1, int(cluster.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()
