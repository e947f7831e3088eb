"""Cost estimates from litellm's bundled price list (never fetched: ``LITELLM_LOCAL_MODEL_COST_MAP``)."""

from __future__ import annotations

from functools import cache

from treesynth.config import is_local_model


@cache
def _is_free(model: str) -> bool:
    return model.startswith("test/") or is_local_model(model)


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """US dollars for the tokens on ``model``; 0 for local and test models, ``None`` when the price is unknown."""
    if _is_free(model):
        return 0.0
    try:
        import litellm

        prompt_cost, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                              completion_tokens=completion_tokens)
    except Exception:  # unknown model: litellm raises a plain Exception
        return None
    return float(prompt_cost) + float(completion_cost)


_UNIT = 1000  # tokens per probe: far below any long-context price tier


@cache
def _unit_prices(model: str) -> tuple[float, float] | None:
    prompt = estimate_cost(model, _UNIT, 0)
    completion = estimate_cost(model, 0, _UNIT)
    return None if prompt is None or completion is None else (prompt / _UNIT, completion / _UNIT)


def live_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """:func:`estimate_cost` from per-token prices looked up once per model (for per-call progress).

    litellm's lookup costs about half a millisecond a call; run totals use the exact :func:`estimate_cost`.
    """
    prices = _unit_prices(model)
    return None if prices is None else prices[0] * prompt_tokens + prices[1] * completion_tokens
