"""How many samples each leaf should hold, and which originals a crowded leaf keeps."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from treesynth.errors import ConfigError
from treesynth.models import stable_seed
from treesynth.synthesis.allocate import allocate


@dataclass(frozen=True)
class BalanceTarget:
    """Exactly one of: ``per_leaf`` samples in every leaf, a ``total`` spread evenly, or a weight file."""

    per_leaf: int | None = None
    total: int | None = None
    distribution: Path | None = None

    def __post_init__(self) -> None:
        """Validate that exactly one positive target was given."""
        given = [v for v in (self.per_leaf, self.total, self.distribution) if v is not None]
        if len(given) != 1:
            raise ConfigError("give exactly one target: --per-leaf K, --total N or --target-dist FILE")
        if (self.per_leaf is not None and self.per_leaf < 1) or (self.total is not None and self.total < 1):
            raise ConfigError("the balance target must be at least 1 sample (--per-leaf / --total)")

    def quotas(self, leaves: list[str]) -> dict[str, int]:
        """Target count per leaf id."""
        if self.per_leaf is not None:
            return dict.fromkeys(leaves, self.per_leaf)
        if self.total is not None:
            return allocate(dict.fromkeys(leaves, 1.0), self.total)
        return self._from_file(leaves)

    def _from_file(self, leaves: list[str]) -> dict[str, int]:
        assert self.distribution is not None
        try:
            raw = json.loads(self.distribution.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--target-dist {self.distribution}: not readable JSON ({exc})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("total"), int) or not isinstance(raw.get("weights"),
                                                                                                  dict):
            raise ConfigError(f"--target-dist {self.distribution}: expected {{\"total\": N, \"weights\": "
                              "{leaf_id: weight}}")
        unknown = sorted(set(raw["weights"]) - set(leaves))
        if unknown:
            raise ConfigError(f"--target-dist {self.distribution}: unknown leaf ids {unknown[:3]}; see tree.json")
        weights = {leaf: float(raw["weights"].get(leaf, 0.0)) for leaf in leaves}
        if raw["total"] < 1 or sum(weights.values()) <= 0:
            raise ConfigError(f"--target-dist {self.distribution}: total and weights must be positive")
        return allocate(weights, raw["total"])


def choose_kept(items: list[int], quota: int, seed: int, leaf_id: str) -> list[int]:
    """The originals a leaf keeps: all when it is not crowded, else a seeded sample of ``quota`` of them."""
    if len(items) <= quota:
        return sorted(items)
    return sorted(random.Random(stable_seed(seed, leaf_id, "downsample")).sample(sorted(items), quota))
