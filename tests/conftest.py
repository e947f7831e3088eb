"""Shared fixtures. No test reaches a provider: models are the fake or scripted engines."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from treesynth.config import RunConfig

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture
def fake_config() -> Callable[..., RunConfig]:
    def make(**overrides: Any) -> RunConfig:
        base = {"model.model": "test/fake", "tree.depth": 2, "tree.width": 3, "tree.pivots": 4,
                "synthesis.samples": 40, "synthesis.samples_per_call": 4}
        base.update(overrides)
        return RunConfig().with_overrides(base)

    return make


