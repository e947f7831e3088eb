"""Test helpers: scripted LMs built on the fake model, and run-directory readers."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import selectors
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dspy
import pytest

from treesynth.config import ROLES
from treesynth.testing.fake_lm import AsyncFakeEngine, FakeEngine, fake_answer

Answer = Callable[[str, dict[str, Any] | None, int | None], str]
T = TypeVar("T")


class ScriptedEngine(FakeEngine):
    """The fake engine with a replaceable answer function; records every request's seed and output field."""

    def __init__(self, answer: Answer = fake_answer) -> None:
        super().__init__()
        self.answer = answer
        self.seen: list[tuple[str, int | None]] = []

    def _respond(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        self.calls += 1
        prompt = "\n".join(m.text or "" for m in request.messages)
        schema = (request.config.response_format or {}).get("schema")
        field = next(iter((schema or {}).get("properties", {"?": 0})))
        self.seen.append((field, request.config.seed))
        text = self.answer(prompt, schema, request.config.seed)
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=len(prompt) // 4, output_tokens=len(text) // 4))


def scripted_lms(engine: ScriptedEngine) -> dict[str, dspy.LM]:
    lm = dspy.LM("test/scripted", engine=engine, async_engine=AsyncFakeEngine(engine), cache=False,
                 temperature=1.0, max_tokens=512, num_retries=0)  # as make_lm: the gateway retries
    return dict.fromkeys(ROLES, lm)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def leaf_index(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """leaf id -> {"node": leaf, "path": [(criterion, value-or-pool, infinite)]}."""
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], path: list[tuple[str, Any, bool]]) -> None:
        if not node["children"]:
            out[node["id"]] = {"node": node, "path": path}
        for child in node["children"]:
            walk(child, [*path, (node["criterion"], child["value"], child["infinite"])])

    walk(tree["root"], [])
    return out


class _JumpingSelector(selectors.DefaultSelector):
    """The real selector, except that waiting for the next timer advances the virtual clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:  # nothing scheduled (wait for real I/O), or a plain poll
            return super().select(timeout)
        ready = super().select(0)
        if not ready:  # idle until the next timer: jump to it
            self._loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is virtual: whenever every task waits for a timer, time jumps to it.

    ``asyncio.sleep``, ``wait_for`` timeouts and ``loop.time()`` then follow the code's own schedule, not
    the machine's load, so a test can assert exact durations and orders. Only for code that waits on
    asyncio alone: a thread working in the background would not hold the clock back.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run_in_virtual_time(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on a :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


class NetworkAccessError(RuntimeError):
    """A test tried to reach a non-loopback address."""


def is_loopback(host: object) -> bool:
    """``localhost`` or a loopback IP literal (``127.0.0.0/8``, ``::1``, IPv4-mapped loopback)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a host name: resolving it would already leave the machine
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


class NetworkGuard:
    """While entered, connecting any socket to a non-loopback address raises :class:`NetworkAccessError`.

    Patches ``socket.socket.connect``/``connect_ex`` and ``socket.create_connection`` (checked before name
    resolution). Unix sockets and other non-IP families pass. Every refusal is also kept in :attr:`violations`,
    so :meth:`check` fails a test even when the code under test swallowed the error (retry loops, ``except
    Exception``).
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._saved: tuple[Any, Any, Any] | None = None

    def _refuse(self, address: object) -> None:
        message = (f"test tried to open a network connection to {address!r}; unit tests may only reach "
                   "loopback (127.0.0.1, ::1, localhost) -- use the fake LM or treesynth.testing.fake_server")
        self.violations.append(message)
        raise NetworkAccessError(message)

    def _check_socket(self, sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not (
                isinstance(address, tuple) and address and is_loopback(address[0])):
            self._refuse(address)

    def __enter__(self) -> NetworkGuard:
        connect, connect_ex, create_connection = self._saved = (
            socket.socket.connect, socket.socket.connect_ex, socket.create_connection)
        guard = self

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            guard._check_socket(sock, address)
            connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            guard._check_socket(sock, address)
            return int(connect_ex(sock, address))

        def guarded_create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            if not is_loopback(address[0]):
                guard._refuse(address)
            return create_connection(address, *args, **kwargs)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
        socket.create_connection = guarded_create_connection  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection = self._saved  # type: ignore[method-assign]
        self._saved = None

    def check(self) -> None:
        """Fail the current test if a connection was refused since :attr:`violations` was last cleared."""
        if self.violations:
            count, first = len(self.violations), self.violations[0]
            self.violations.clear()
            pytest.fail(f"{count} non-loopback connection attempt(s); the first: {first}", pytrace=False)
