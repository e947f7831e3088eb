"""Shared fixtures. No test reaches a provider: models are the fake or scripted engines, and the network guard
fails any test that connects a socket to a non-loopback address."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import NetworkGuard

from treesynth.config import RunConfig

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

EMBEDDED_TIMEOUT = 3600
"""Seconds per ``embedded`` test (pytest-timeout; the default in pyproject.toml is for unit tests): they load a
1.5B model on two shared cores, run whole CLI runs on it, and one call can take half a minute."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("embedded") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(EMBEDDED_TIMEOUT))


@pytest.fixture(scope="session")
def _network_patched() -> Iterator[NetworkGuard]:
    """Socket patches for the whole session, so module- and session-scoped fixtures are guarded too."""
    with NetworkGuard() as guard:
        yield guard


@pytest.fixture(autouse=True)
def network_guard(_network_patched: NetworkGuard) -> Iterator[NetworkGuard]:
    """Fail the test if it (or a fixture it uses) tried a non-loopback connection, even if the error was caught."""
    _network_patched.violations.clear()
    yield _network_patched
    _network_patched.check()


@pytest.fixture
def fake_config() -> Callable[..., RunConfig]:
    def make(**overrides: Any) -> RunConfig:
        base = {"model.model": "test/fake", "tree.depth": 2, "tree.width": 3, "tree.pivots": 4,
                "synthesis.samples": 40, "synthesis.samples_per_call": 4}
        base.update(overrides)
        return RunConfig().with_overrides(base)

    return make
