"""The only place a ``dspy.LM`` is built: model strings in, configured LMs out."""

from __future__ import annotations

from typing import Any

import dspy

from treesynth.config import ROLES, ModelConfig, Role, is_local_model
from treesynth.errors import ConfigError
from treesynth.providers.local.registry import DEFAULT_LOCAL_MODEL, LOCAL_EXTRA_HINT, local_model_available

FAKE_MODEL = "test/fake"
EMBEDDED_MODEL = DEFAULT_LOCAL_MODEL


def embedded_available() -> bool:
    """Whether the default embedded model's extra (``treesynth[local]``) is installed."""
    return local_model_available(EMBEDDED_MODEL)


def default_model() -> str:
    """The embedded model when installed; otherwise a usage error naming both ways out."""
    if embedded_available():
        return EMBEDDED_MODEL
    raise ConfigError(
        "no --model given and the embedded model is not installed: "
        f"pass --model provider/model (e.g. openai/gpt-4o-mini, or test/fake to try it out) or {LOCAL_EXTRA_HINT}"
    )


def _check_litellm_model(model: str) -> None:
    provider, _, name = model.partition("/")
    if not provider or not name:
        raise ConfigError(f"model {model!r} needs a provider prefix: use provider/model, e.g. openai/gpt-4o-mini")
    import litellm

    known = {str(getattr(p, "value", p)) for p in litellm.provider_list}
    known |= {str(entry.get("provider")) for entry in litellm.custom_provider_map or []}  # litellm.CustomLLM
    if provider not in known:
        close = sorted(p for p in known if p.startswith(provider[:3]))[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown model provider {provider!r} in {model!r}{hint}; use a litellm provider/model string")
    try:
        missing = litellm.validate_environment(model).get("missing_keys", [])
    except Exception:  # litellm cannot tell for this provider: let the first call decide
        missing = []
    secrets = [key for key in missing if key.endswith(("_KEY", "_TOKEN"))]
    if secrets:
        raise ConfigError(f"model {model!r} needs {', '.join(secrets)} in the environment; export it "
                          "(treesynth reads keys only from the environment) or choose another --model")


def make_lm(model: str, *, temperature: float, max_tokens: int, api_base: str | None = None,
            cache: bool = True, engine: str = "litellm", **kwargs: Any) -> dspy.LM:
    """Build the LM for ``model``: ``test/fake``, ``local/<name>`` (embedded) or any litellm string.

    Provider models go through litellm by default (``engine="native"`` selects DSPy's own client) with
    DSPy's retries off: :class:`~treesynth.providers.gateway.Gateway` retries, releasing its slot.
    """
    if model == FAKE_MODEL:
        from treesynth.testing.fake_lm import AsyncFakeEngine, FakeEngine

        fake = FakeEngine()
        return dspy.LM(model, engine=fake, async_engine=AsyncFakeEngine(fake), temperature=temperature,
                       max_tokens=max_tokens, cache=False)
    if is_local_model(model):
        from treesynth.providers.local.registry import local_model

        spec = local_model(model)
        if not local_model_available(spec.name):
            raise ConfigError(spec.install_hint())
        from treesynth.providers.local.lm import make_local_lm

        return make_local_lm(model, temperature=temperature, max_tokens=max_tokens, cache=cache)
    if model.startswith("test/"):
        raise ConfigError(f"unknown test model {model!r}; the only test model is {FAKE_MODEL}")
    _check_litellm_model(model)
    extra: dict[str, Any] = {"api_base": api_base} if api_base else {}
    return dspy.LM(model, engine="litellm" if engine == "litellm" else "auto", temperature=temperature,
                   max_tokens=max_tokens, cache=cache, num_retries=0, **extra, **kwargs)


def make_role_lms(config: ModelConfig) -> dict[Role, dspy.LM]:
    """One LM per role (roles sharing model and settings share the LM object)."""
    built: dict[tuple[str, float, int], dspy.LM] = {}
    lms: dict[Role, dspy.LM] = {}
    for role in ROLES:
        model = config.model_for(role) or default_model()
        key = (model, config.temperature(role), config.max_tokens_for(role))
        if key not in built:
            built[key] = make_lm(model, temperature=key[1], max_tokens=key[2], api_base=config.api_base,
                                 cache=config.cache, engine=config.engine)
        lms[role] = built[key]
    return lms
