"""How many samples each leaf should hold, and which originals a crowded leaf keeps."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from treesynth.errors import ConfigError
from treesynth.models import stable_seed
from treesynth.synthesis.allocate import allocate


@dataclass(frozen=True)
class BalanceTarget:
    """Exactly one of: ``per_leaf`` samples in every leaf, a ``total`` spread evenly, or a weight file.

    A weight file is read and checked (shape, positive total and weights) on construction, before any LLM call.
    """

    per_leaf: int | None = None
    total: int | None = None
    distribution: Path | None = None
    weights: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)
    weights_total: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate that exactly one positive target was given; read and check a weight file."""
        given = [v for v in (self.per_leaf, self.total, self.distribution) if v is not None]
        if len(given) != 1:
            raise ConfigError("give exactly one target: --per-leaf K, --total N or --target-dist FILE")
        if (self.per_leaf is not None and self.per_leaf < 1) or (self.total is not None and self.total < 1):
            raise ConfigError("the balance target must be at least 1 sample (--per-leaf / --total)")
        if self.distribution is not None:
            total, weights = self._read_file()
            object.__setattr__(self, "weights_total", total)
            object.__setattr__(self, "weights", weights)

    def _read_file(self) -> tuple[int, dict[str, float]]:
        assert self.distribution is not None
        name = f"--target-dist {self.distribution}"
        try:
            raw = json.loads(self.distribution.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{name}: not readable JSON ({str(exc).splitlines()[0]})") from None
        total = raw.get("total") if isinstance(raw, dict) else None
        weights = raw.get("weights") if isinstance(raw, dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or not isinstance(weights, dict) or not all(
                isinstance(w, int | float) and not isinstance(w, bool) for w in weights.values()):
            raise ConfigError(f"{name}: expected {{\"total\": N, \"weights\": {{leaf_id: weight}}}} with numbers")
        if total < 1:
            raise ConfigError(f"{name}: \"total\" is {total}; set it to at least 1 sample")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ConfigError(f"{name}: weights must be non-negative, not all zero; give a leaf a positive weight")
        return total, {str(leaf): float(w) for leaf, w in weights.items()}

    def check_leaves(self, leaves: list[str]) -> None:
        """Refuse a weight file that names leaf ids outside ``leaves`` (the tree's leaves)."""
        if self.distribution is None:
            return
        unknown = sorted(set(self.weights) - set(leaves))
        if unknown:
            raise ConfigError(f"--target-dist {self.distribution}: unknown leaf ids {unknown[:3]}; use the leaf ids "
                              "of tree.json")

    def quotas(self, leaves: list[str]) -> dict[str, int]:
        """Target count per leaf id."""
        if self.per_leaf is not None:
            return dict.fromkeys(leaves, self.per_leaf)
        if self.total is not None:
            return allocate(dict.fromkeys(leaves, 1.0), self.total)
        self.check_leaves(leaves)
        return allocate({leaf: self.weights.get(leaf, 0.0) for leaf in leaves}, self.weights_total)


def choose_kept(items: list[int], quota: int, seed: int, leaf_id: str,
                rank: Callable[[int], int] | None = None) -> list[int]:
    """The originals a leaf keeps: all when it is not crowded, else a seeded sample of ``quota`` of them.

    ``rank`` orders the items before sampling (a content order makes the choice independent of file order).
    """
    if len(items) <= quota:
        return sorted(items)
    return sorted(random.Random(stable_seed(seed, leaf_id, "downsample")).sample(sorted(items, key=rank), quota))
