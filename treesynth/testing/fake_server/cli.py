"""The command line of ``python -m treesynth.testing.fake_server``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Iterable, Sequence
from dataclasses import fields

from treesynth.errors import ConfigError
from treesynth.testing.fake_server.app import AsyncFakeServer
from treesynth.testing.fake_server.faults import BURST_KINDS, RESPONSE_FORMAT_DIALECTS, RETRY_AFTER_FORMS, FaultConfig

FLAG_HELP: dict[str, str] = {
    "latency_ms": "mean latency per response",
    "jitter_ms": "uniform jitter in [-j, +j] around the latency",
    "rate_429": "probability of a 429",
    "retry_after": "seconds announced in a 429's Retry-After header",
    "rate_500": "probability of a 500",
    "rate_hang": "probability of holding the answer back --hang-seconds",
    "hang_seconds": "length of a hang",
    "rate_malformed": "probability of an HTTP 200 whose body is not valid JSON",
    "seed": "seed of the fault draws",
    "response_format_dialect": "structured output the server takes: json_schema (OpenAI's; default) or "
                               "json_object_schema (llama-cpp-python's: json_schema gets HTTP 500)",
    "retry_after_form": "how a 429 writes Retry-After: seconds or date (an HTTP-date)",
    "burst": "a fault forced on --burst-length requests from number --burst-start: "
             + ", ".join(filter(None, BURST_KINDS)),
    "burst_start": "the first request (0-based, arrival order) of the burst",
    "burst_length": "how many requests the burst lasts (0: none)",
}
"""Help of each fault flag (one per :class:`FaultConfig` field)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m treesynth.testing.fake_server``."""
    parser = argparse.ArgumentParser(prog="python -m treesynth.testing.fake_server",
                                     description="Fake OpenAI-compatible server answering with treesynth's fake "
                                                 "model, with seeded latency and fault injection.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    defaults = FaultConfig()
    for spec in fields(FaultConfig):  # one flag per fault setting, named after it
        default = getattr(defaults, spec.name)
        choices = {"response_format_dialect": RESPONSE_FORMAT_DIALECTS, "retry_after_form": RETRY_AFTER_FORMS,
                   "burst": BURST_KINDS}.get(spec.name)
        parser.add_argument("--" + spec.name.replace("_", "-"), type=type(default), default=default, choices=choices,
                            help=FLAG_HELP[spec.name])
    parser.add_argument("--log-interval", type=float, default=10.0, help="seconds between request-count logs")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def config_from_args(args: argparse.Namespace) -> FaultConfig:
    """The :class:`FaultConfig` described by parsed command-line ``args``."""
    return FaultConfig(**{spec.name: getattr(args, spec.name) for spec in fields(FaultConfig)})


async def serve(config: FaultConfig, *, host: str = "127.0.0.1", port: int = 0, log_interval: float = 10.0,
                stop_signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Serve until one of ``stop_signals`` arrives, after printing ``listening on BASE_URL``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, stop.set)
    async with AsyncFakeServer(config, host=host, port=port, log_interval=log_interval) as server:
        print(f"listening on {server.base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m treesynth.testing.fake_server``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config, host=args.host, port=args.port, log_interval=args.log_interval))
    return 0
