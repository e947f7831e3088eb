"""The fake server's fault model: the configuration, the seeded per-request draw and the outcome counts."""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple

from treesynth.errors import ConfigError

RESPONSE_FORMAT_DIALECTS = ("json_schema", "json_object_schema")
"""The structured-output dialects the fake server can take (:attr:`FaultConfig.response_format_dialect`)."""

STATUS_BURSTS = ("429", "500", "502", "503", "529")
"""Burst kinds answered with that HTTP status (a 429 carries ``Retry-After``)."""
TRANSPORT_BURSTS = ("hang", "slow", "truncated", "reset", "down")
"""Burst kinds that break the HTTP exchange: held back, a trickle after the headers (slow-loris), a body cut
short of its ``Content-Length``, a connection reset mid-body, and a connection closed before any answer."""
CONTENT_BURSTS = ("invalid_json", "empty", "duplicates", "out_of_range", "ancestor", "echo")
"""Burst kinds answered HTTP 200 with wrong content: not JSON, every list empty, every list one value repeated,
numbers and label lists out of range, a proposed criterion that repeats an ancestor's, samples echoing the prompt."""
BURST_KINDS = ("", *STATUS_BURSTS, *TRANSPORT_BURSTS, *CONTENT_BURSTS)
"""Every :attr:`FaultConfig.burst` (``""``: no burst)."""
RETRY_AFTER_FORMS = ("seconds", "date")
"""How a 429 writes ``Retry-After``: delta seconds, or an HTTP-date (RFC 9110 section 10.2.3)."""


class Outcome(StrEnum):
    """How the server answered one chat-completion request (the keys of ``FakeServer.counts``)."""

    OK = "ok"
    RATE_LIMITED = "429"
    SERVER_ERROR = "500"
    HANG = "hang"
    MALFORMED = "malformed"
    INVALID = "invalid"
    """The request itself was bad (HTTP 400); no fault was drawn for it."""
    ERROR = "error"
    """The fake model failed on the request (HTTP 500, logged); a bug, not an injected fault."""
    BURST = "burst"
    """The request fell in the configured burst (:attr:`FaultConfig.burst`)."""


@dataclass(frozen=True)
class FaultConfig:
    """Latency and fault rates of a fake server.

    The four rates are probabilities of disjoint outcomes, so each lies in ``[0, 1]`` and their sum is at
    most 1; the remaining probability is a normal answer.

    Attributes:
        latency_ms: Mean latency added to every response except a hang.
        jitter_ms: Half-width of the uniform jitter around ``latency_ms``.
        rate_429: Probability of a 429 answer.
        retry_after: Seconds announced in the 429's ``Retry-After`` header.
        rate_500: Probability of a 500 answer.
        rate_hang: Probability of holding the answer back ``hang_seconds``.
        hang_seconds: How long a hung request waits before it is answered.
        rate_malformed: Probability of an HTTP 200 whose body is not valid JSON.
        seed: Seed of the fault draws.
        response_format_dialect: The structured-output dialect the server takes: ``json_schema`` (OpenAI's,
            the default) or ``json_object_schema`` (llama-cpp-python's; see the package docstring).
        retry_after_form: ``seconds`` or ``date`` (:data:`RETRY_AFTER_FORMS`).
        burst: A fault (:data:`BURST_KINDS`) forced on every request numbered ``burst_start`` to
            ``burst_start + burst_length - 1`` (arrival order), in place of the random draw.
        burst_start: The first request of the burst.
        burst_length: How many requests the burst lasts (0: no burst).
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    hang_seconds: float = 30.0
    rate_malformed: float = 0.0
    seed: int = 0
    response_format_dialect: Literal["json_schema", "json_object_schema"] = "json_schema"
    retry_after_form: str = "seconds"
    burst: str = ""
    burst_start: int = 0
    burst_length: int = 0

    def __post_init__(self) -> None:
        """Reject negative durations and counts, rates outside ``[0, 1]`` or summing above 1, unknown names."""
        for name, allowed in (("response_format_dialect", RESPONSE_FORMAT_DIALECTS),
                              ("retry_after_form", RETRY_AFTER_FORMS), ("burst", BURST_KINDS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"fake server: {name} must be one of {', '.join(filter(None, allowed))}, "
                                  f"got {getattr(self, name)!r}")
        if self.burst_start < 0 or self.burst_length < 0:
            raise ConfigError("fake server: burst_start and burst_length must be >= 0")
        for name in ("latency_ms", "jitter_ms", "retry_after", "hang_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"fake server: {name} must be a finite number >= 0, got {value!r}")
        rates = self.rates()
        for name, rate in zip(("rate_429", "rate_500", "rate_hang", "rate_malformed"), rates, strict=True):
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"fake server: {name} must lie in [0, 1], got {rate!r}")
        if sum(rates) > 1.0 + 1e-9:
            raise ConfigError(f"fake server: the fault rates sum to {sum(rates):g}; lower them to sum to at most 1")

    def rates(self) -> tuple[float, float, float, float]:
        """The fault probabilities in draw order: 429, 500, hang, malformed."""
        return (self.rate_429, self.rate_500, self.rate_hang, self.rate_malformed)


class Decision(NamedTuple):
    """The fault drawn for one request and how long (seconds) to wait before responding."""

    outcome: Outcome
    delay: float


_DRAW_ORDER = (Outcome.RATE_LIMITED, Outcome.SERVER_ERROR, Outcome.HANG, Outcome.MALFORMED)


def _uniforms(seed: int, index: int) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) derived from ``(seed, index)`` alone (fast and process-stable)."""
    digest = hashlib.blake2b(f"fake-server:{seed}:{index}".encode(), digest_size=16).digest()
    scale = 2.0**-53
    return (int.from_bytes(digest[:8], "big") >> 11) * scale, (int.from_bytes(digest[8:], "big") >> 11) * scale


def in_burst(config: FaultConfig, index: int) -> bool:
    """Whether request number ``index`` falls in ``config``'s burst."""
    return bool(config.burst) and config.burst_start <= index < config.burst_start + config.burst_length


def decide(config: FaultConfig, index: int) -> Decision:
    """The outcome and delay (seconds) of chat-completion request number ``index`` (0-based) under ``config``.

    A pure function of ``(config.seed, index)`` and the rates, which makes a run reproducible. Every
    outcome but a hang waits ``latency_ms`` plus a uniform jitter in ``[-jitter_ms, +jitter_ms]`` (clamped
    at 0); a hang waits ``hang_seconds``. A request in the burst gets :attr:`Outcome.BURST` (the caller
    applies ``config.burst``).
    """
    draw, spread = _uniforms(config.seed, index)
    outcome = Outcome.BURST if in_burst(config, index) else Outcome.OK
    threshold = 0.0
    for candidate, rate in zip(_DRAW_ORDER, config.rates(), strict=True):
        threshold += rate
        if outcome is Outcome.OK and draw < threshold:
            outcome = candidate
            break
    if outcome is Outcome.HANG:
        return Decision(outcome, config.hang_seconds)
    jitter = (2.0 * spread - 1.0) * config.jitter_ms
    return Decision(outcome, max(0.0, config.latency_ms + jitter) / 1000.0)


class ServerStats:
    """Thread-safe counts of chat-completion requests by :class:`Outcome` and by response-format kind."""

    def __init__(self) -> None:
        """Start with every outcome at zero."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((o.value for o in Outcome), 0)
        self._formats: dict[str, int] = {}

    def record(self, outcome: Outcome) -> None:
        """Count one request."""
        with self._lock:
            self._counts[outcome.value] += 1

    def record_format(self, kind: str) -> None:
        """Count one well-formed chat request by the kind of its ``response_format`` (``format_kind``)."""
        with self._lock:
            self._formats[kind] = self._formats.get(kind, 0) + 1

    def formats(self) -> dict[str, int]:
        """A copy of the counts by response-format kind (only kinds seen)."""
        with self._lock:
            return dict(self._formats)

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts, keyed by outcome value (``ok``, ``429``, ``500``, ``hang``, ...)."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """How many chat-completion requests were received."""
        with self._lock:
            return sum(self._counts.values())
