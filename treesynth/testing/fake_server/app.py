"""The fake server's HTTP side on :mod:`aiohttp.web`: routes, the delay before each answer, start and stop.

:class:`AsyncFakeServer` runs on the caller's event loop; :class:`FakeServer` runs one in a background
thread with its own loop, for sync code and for tests that drive clients from another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from treesynth.testing.fake_server.chat import ChatResponder, Reply, error_reply
from treesynth.testing.fake_server.faults import FaultConfig, ServerStats

logger = logging.getLogger("treesynth.testing.fake_server")  # stable name also under `python -m`

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODEL_PATHS = frozenset({"/v1/models", "/models"})
SHUTDOWN_GRACE = 0.01
"""Seconds an answer in progress (a hang, say) may still take once the server closes; then it is cancelled."""

Sleep = Callable[[float], Awaitable[object]]
"""How the server waits out a reply's delay (:func:`asyncio.sleep` unless a test injects another)."""


class AsyncFakeServer:
    """The fake OpenAI-compatible server on the running event loop (``async with AsyncFakeServer() as s``).

    Attributes:
        config: Latency and fault rates.
        stats: Thread-safe counts of chat-completion requests by outcome.
    """

    def __init__(self, config: FaultConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 log_interval: float = 10.0, sleep: Sleep = asyncio.sleep) -> None:
        """Prepare a server on ``host:port`` (port 0 picks a free port); :meth:`start` binds it.

        ``log_interval`` is how often (seconds) the request counts are logged at INFO while they change.
        ``sleep`` waits out each reply's delay (latency, jitter or hang) before the reply is sent.
        """
        self.config = config or FaultConfig()
        self.stats = ServerStats()
        self._responder = ChatResponder(self.config, self.stats)
        self._host = host
        self._port = port
        self._log_interval = log_interval
        self._sleep = sleep
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._closed = False
        self._reporter: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._bound_port is None:
            raise RuntimeError("the fake server is not started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give clients, ``http://HOST:PORT/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._runner is not None:
            raise RuntimeError("the fake server is already started")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{path:.*}", self._handle)
        # handler_cancellation: an answer whose client went away (timed out on a hang, say) is cancelled
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE, handler_cancellation=True,
                                     max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port, backlog=2048).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self._bound_port = int(self._runner.addresses[0][1])
        self._reporter = asyncio.create_task(self._report_periodically())
        logger.info("fake OpenAI server listening on %s (%s)", self.base_url, self.config)

    async def close(self) -> None:
        """Stop accepting, cancel answers in progress (hung ones included) and log the final counts."""
        if self._runner is None or self._closed:
            return
        self._closed = True
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)
        await self._runner.cleanup()
        logger.info("fake OpenAI server stopped after %d requests: %s", self.stats.total, self.stats.snapshot())

    async def __aenter__(self) -> Self:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Close the server."""
        await self.close()

    async def _report_periodically(self) -> None:
        """Log the counts every ``log_interval`` seconds while they change."""
        last = -1
        while True:
            await asyncio.sleep(self._log_interval)
            total = self.stats.total
            if total != last:
                logger.info("fake OpenAI server: %d requests: %s", total, self.stats.snapshot())
                last = total

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every route: build the reply, wait out its delay, send it as JSON (or break it, in a transport burst)."""
        reply = await self._reply(request)
        if reply.delay > 0:
            await self._sleep(reply.delay)
        if reply.transport:
            return await self._break(request, reply)
        return web.Response(status=reply.status, body=reply.body, content_type="application/json",
                            headers=dict(reply.headers))

    async def _break(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        """Deliver ``reply`` broken: ``down`` closes the connection unanswered; ``slow`` sends the headers and
        then one byte per ``hang_seconds / len(body)`` (slow-loris); ``truncated`` sends half the body and
        closes; ``reset`` sends half the body and resets the connection (RST)."""
        transport = request.transport
        if reply.transport == "down" or transport is None:
            _reset(transport)
            return web.Response(status=499)  # never sent: the connection is gone
        response = web.StreamResponse(status=reply.status, headers={"Content-Type": "application/json"})
        response.content_length = len(reply.body)
        await response.prepare(request)
        if reply.transport == "slow":
            pause = self.config.hang_seconds / max(1, len(reply.body))
            for offset in range(len(reply.body)):
                await response.write(reply.body[offset:offset + 1])
                await self._sleep(pause)
            await response.write_eof()
            return response
        await response.write(reply.body[: len(reply.body) // 2])
        await asyncio.sleep(0)  # let the half body reach the socket before the connection goes
        if reply.transport == "reset":
            _reset(transport)
        else:
            transport.close()
        return response

    async def _reply(self, request: web.Request) -> Reply:
        """The reply to ``request`` (paths match with or without a trailing slash)."""
        path = request.path.rstrip("/") or "/"
        if path in CHAT_PATHS:
            if request.method != "POST":
                return _not_allowed("POST")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return error_reply(413, "request body too large")
            return self._responder.respond(body)
        if request.method != "GET":
            return _not_allowed("GET")
        if path in MODEL_PATHS:
            model = {"id": "fake", "object": "model", "created": 0, "owned_by": "treesynth"}
            return Reply(200, json.dumps({"object": "list", "data": [model]}).encode())
        if path == "/health":
            return Reply(200, json.dumps({"status": "ok", "requests": self.stats.total}).encode())
        return error_reply(404, f"no route {path}", code="not_found")


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Abort the connection with a TCP reset (``SO_LINGER`` 0), or just abort it where that cannot be set."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


def _not_allowed(method: str) -> Reply:
    """HTTP 405 naming the one method the route takes."""
    return error_reply(405, f"use {method}", headers=(("Allow", method),))


class FakeServer:
    """:class:`AsyncFakeServer` running in a background thread with its own event loop.

    Use it as a context manager: ``with FakeServer(FaultConfig(rate_429=0.1)) as server: server.base_url``.
    """

    def __init__(self, config: FaultConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 log_interval: float = 10.0, start_timeout: float = 10.0, sleep: Sleep = asyncio.sleep) -> None:
        """Prepare a server; :meth:`start` (or entering the context) runs it. ``sleep`` as in
        :class:`AsyncFakeServer` (it runs on the server's loop)."""
        self.server = AsyncFakeServer(config, host=host, port=port, log_interval=log_interval, sleep=sleep)
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> FaultConfig:
        """Latency and fault rates."""
        return self.server.config

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give clients, ``http://127.0.0.1:PORT/v1``."""
        return self.server.base_url

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    @property
    def counts(self) -> dict[str, int]:
        """Chat-completion requests by outcome: ``ok``, ``429``, ``500``, ``hang``, ``malformed`` (and
        ``invalid`` for HTTP 400s, ``error`` for fake-model failures)."""
        return self.server.stats.snapshot()

    @property
    def formats(self) -> dict[str, int]:
        """Well-formed chat-completion requests by response-format kind (``format_kind``): ``json_schema``,
        ``json_object_schema``, ``json_object``, ``none``, ``other``; only kinds seen."""
        return self.server.stats.formats()

    @property
    def requests_total(self) -> int:
        """How many chat-completion requests were received."""
        return self.server.stats.total

    def start(self) -> Self:
        """Start the background thread and wait until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the fake server is already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai-server", daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self.server.start(), self._loop)
        try:
            started.result(self._start_timeout)
        except TimeoutError:
            started.cancel()
            self._end_loop(self._start_timeout)
            raise RuntimeError(f"the fake server did not start within {self._start_timeout:g}s") from None
        except BaseException:
            self._end_loop(self._start_timeout)
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (cancelling hung answers) and join its thread."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(timeout)
        finally:
            self._end_loop(timeout)

    def _end_loop(self, timeout: float) -> None:
        """Stop the loop, join its thread and close the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("the fake server thread did not stop within %gs", timeout)
        else:
            loop.close()

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop the server."""
        self.stop()
