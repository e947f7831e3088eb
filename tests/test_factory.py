"""The LM factory: model strings litellm knows, custom litellm providers, and the offline price list."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import litellm
import pytest
from litellm import CustomLLM, ModelResponse

from treesynth.errors import ConfigError
from treesynth.providers import make_lm


class EchoLLM(CustomLLM):
    """A litellm custom provider answering in-process (no network)."""

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return ModelResponse(choices=[{"message": {"role": "assistant", "content": "echo"}}])

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return self.completion()


def test_custom_litellm_provider_is_accepted_and_called(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown model provider 'echoprov'"):
        make_lm("echoprov/any-model", temperature=0.5, max_tokens=32)
    monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "echoprov", "custom_handler": EchoLLM()}])
    lm = make_lm("echoprov/any-model", temperature=0.5, max_tokens=32, cache=False)
    assert lm.model == "echoprov/any-model"
    assert lm("hello") == ["echo"]


def test_importing_treesynth_keeps_litellm_offline_for_prices(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    code = "import os, treesynth; print(os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    explicit = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                              env={**env, "LITELLM_LOCAL_MODEL_COST_MAP": "False"}, timeout=60, check=False)
    assert explicit.stdout.strip() == "False"  # a user's own setting wins
