"""Spending caps the :class:`~treesynth.providers.gateway.Gateway` enforces before every call.

A :class:`SpendingCap` counts a run's calls and estimated dollars, including earlier sessions of a resumed
run (the store's ledger), and admits a new call only while it cannot exceed ``max_calls`` and its expected
cost (the mean cost of the calls so far) keeps the spend within ``max_cost_usd``. Calls in flight count as
started, so concurrency never overshoots the call cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treesynth.errors import CAP_RESUME_HINT, BudgetExceededError
from treesynth.providers.pricing import live_cost


@dataclass
class SpendingCap:
    """Caps of one run (``None``: no cap) and what the run has spent so far.

    Attributes:
        max_calls: Most LLM calls (finished plus in flight).
        max_cost_usd: Most estimated US dollars.
        calls: Calls finished (earlier sessions included).
        cost_usd: Estimated dollars of the finished calls.
        stopped: The message of the cap that stopped the run, once one has.
    """

    max_calls: int | None = None
    max_cost_usd: float | None = None
    calls: int = 0
    cost_usd: float = 0.0
    in_flight: int = field(default=0, init=False)
    priced: int = field(default=0, init=False)
    """Finished calls this session whose price is known (the mean cost's denominator)."""
    priced_cost: float = field(default=0.0, init=False)
    stopped: str | None = field(default=None, init=False)

    @property
    def active(self) -> bool:
        """Whether any cap is set."""
        return self.max_calls is not None or self.max_cost_usd is not None

    def admit(self) -> None:
        """Reserve one call, or raise :class:`BudgetExceededError` (and start no call) when a cap would be exceeded."""
        if self.stopped is not None:
            raise BudgetExceededError(self.stopped)
        if self.max_calls is not None and self.calls + self.in_flight + 1 > self.max_calls:
            self._stop(f"{self.calls + self.in_flight} of --max-calls {self.max_calls} LLM calls started")
        if self.max_cost_usd is not None:
            mean = self.priced_cost / self.priced if self.priced else 0.0
            if self.cost_usd + (self.in_flight + 1) * mean > self.max_cost_usd or self.cost_usd >= self.max_cost_usd:
                self._stop(f"${self.cost_usd:.4f} of --max-cost ${self.max_cost_usd:g} spent")
        self.in_flight += 1

    def charge(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Book one finished call; a model without a known price stops a cost cap before the next call."""
        self.in_flight = max(0, self.in_flight - 1)
        self.calls += 1
        cost = live_cost(model, prompt_tokens, completion_tokens)
        if cost is None:
            if self.max_cost_usd is not None and self.stopped is None:
                self.stopped = (f"spending cap: the price of {model} is unknown, so --max-cost cannot be enforced; "
                                "use --max-calls instead")
            return
        self.cost_usd += cost
        self.priced += 1
        self.priced_cost += cost

    def release(self) -> None:
        """Give back a reservation whose call never finished (cancelled)."""
        self.in_flight = max(0, self.in_flight - 1)

    def _stop(self, spent: str) -> None:
        self.stopped = f"spending cap reached: {spent}; no further call was started; {CAP_RESUME_HINT}"
        raise BudgetExceededError(self.stopped)
