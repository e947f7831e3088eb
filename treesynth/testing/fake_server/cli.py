"""The command line of ``python -m treesynth.testing.fake_server``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Iterable, Sequence

from treesynth.errors import ConfigError
from treesynth.testing.fake_server.app import AsyncFakeServer
from treesynth.testing.fake_server.faults import RESPONSE_FORMAT_DIALECTS, FaultConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m treesynth.testing.fake_server``."""
    parser = argparse.ArgumentParser(prog="python -m treesynth.testing.fake_server",
                                     description="Fake OpenAI-compatible server answering with treesynth's fake "
                                                 "model, with seeded latency and fault injection.")
    defaults = FaultConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms, help="mean latency per response")
    parser.add_argument("--jitter-ms", type=float, default=defaults.jitter_ms,
                        help="uniform jitter in [-j, +j] around the latency")
    parser.add_argument("--rate-429", type=float, default=defaults.rate_429, help="probability of a 429")
    parser.add_argument("--retry-after", type=float, default=defaults.retry_after,
                        help="seconds announced in a 429's Retry-After header")
    parser.add_argument("--rate-500", type=float, default=defaults.rate_500, help="probability of a 500")
    parser.add_argument("--rate-hang", type=float, default=defaults.rate_hang,
                        help="probability of holding the answer back --hang-seconds")
    parser.add_argument("--hang-seconds", type=float, default=defaults.hang_seconds, help="length of a hang")
    parser.add_argument("--rate-malformed", type=float, default=defaults.rate_malformed,
                        help="probability of an HTTP 200 whose body is not valid JSON")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the fault draws")
    parser.add_argument("--response-format-dialect", choices=RESPONSE_FORMAT_DIALECTS,
                        default=defaults.response_format_dialect,
                        help="structured output the server takes: json_schema (OpenAI's; default) or "
                             "json_object_schema (llama-cpp-python's: json_schema gets HTTP 500)")
    parser.add_argument("--log-interval", type=float, default=10.0, help="seconds between request-count logs")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def config_from_args(args: argparse.Namespace) -> FaultConfig:
    """The :class:`FaultConfig` described by parsed command-line ``args``."""
    return FaultConfig(latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, rate_429=args.rate_429,
                       retry_after=args.retry_after, rate_500=args.rate_500, rate_hang=args.rate_hang,
                       hang_seconds=args.hang_seconds, rate_malformed=args.rate_malformed, seed=args.seed,
                       response_format_dialect=args.response_format_dialect)


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
