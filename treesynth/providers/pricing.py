"""Cost estimates from litellm's bundled price list (never fetched: ``LITELLM_LOCAL_MODEL_COST_MAP``)."""

from __future__ import annotations

from functools import cache


@cache
def _is_free(model: str) -> bool:
    return model.startswith(("test/", "local/"))


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
