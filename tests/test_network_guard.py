"""The network guard (tests/conftest.py): a unit test that connects a socket anywhere but loopback fails, with
the address in the message, before any packet leaves; loopback and Unix sockets keep working."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import NetworkAccessError, NetworkGuard

TESTS = Path(__file__).parent
UNROUTABLE = ("10.255.255.1", 9)  # private and unrouted: even an unguarded connect would go nowhere


def _no_resolution(*args: object, **kwargs: object) -> list[object]:
    raise AssertionError(f"name resolution reached: {args}")


def test_the_autouse_guard_refuses_non_loopback_addresses_before_connecting(
        network_guard: NetworkGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _no_resolution)  # the guard decides before any DNS lookup
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)  # were the guard off, connect would return at once (EINPROGRESS), not hang
        with pytest.raises(NetworkAccessError, match=r"10\.255\.255\.1.*loopback"):
            sock.connect(UNROUTABLE)
        with pytest.raises(NetworkAccessError, match=r"10\.255\.255\.1"):
            sock.connect_ex(UNROUTABLE)
    with pytest.raises(NetworkAccessError, match=r"api\.openai\.com"):
        socket.create_connection(("api.openai.com", 443), timeout=0.01)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock6:
        sock6.setblocking(False)
        with pytest.raises(NetworkAccessError, match="2001:db8::1"):
            sock6.connect(("2001:db8::1", 9, 0, 0))
    assert len(network_guard.violations) == 4
    network_guard.violations.clear()  # these were the point of the test


def test_loopback_and_unix_sockets_still_connect(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            with socket.create_connection((host, port), timeout=5):
                server.accept()[0].close()
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) == 0
    if socket.has_ipv6:
        try:
            server6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
        except OSError:
            pass  # no IPv6 loopback on this machine
        else:
            with server6, socket.create_connection(("::1", server6.getsockname()[1]), timeout=5):
                pass
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(path)
        listener.listen()
        client.connect(path)


def test_a_swallowed_refusal_still_fails_the_check() -> None:
    with NetworkGuard() as guard, contextlib.suppress(Exception):  # what a retry loop or a provider client might do
        socket.create_connection(UNROUTABLE, timeout=0.01)
    with pytest.raises(pytest.fail.Exception, match=r"1 non-loopback connection attempt.*10\.255\.255\.1"):
        guard.check()
    guard.check()  # reported once


def test_a_test_that_swallows_a_refusal_fails_under_the_conftest(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(
        "import socket\n\n"
        "def test_swallows():\n"
        "    try:\n"
        f"        socket.create_connection({UNROUTABLE!r}, timeout=0.01)\n"
        "    except Exception:\n"
        "        pass\n\n"
        "def test_quiet():\n"
        "    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 passed, 1 error" in done.stdout, done.stdout
    assert "ERROR at teardown of test_swallows" in done.stdout and "10.255.255.1" in done.stdout
