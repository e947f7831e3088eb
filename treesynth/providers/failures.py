"""How a failed provider call reads: a host never reached, or a connection broken once open."""

from __future__ import annotations

UNREACHABLE_MARKERS = ("Connection error", "Connection refused", "Name or service not known", "nodename nor servname")
MID_EXCHANGE_ERRORS = frozenset({"ReadError", "RemoteProtocolError", "ProtocolError", "ClientPayloadError",
                                  "ContentLengthError", "ServerDisconnectedError", "ReadTimeout", "IncompleteRead"})
"""Transport errors (httpx, aiohttp, DSPy's own client) raised once a connection was open: the host was reached."""


def broke_mid_exchange(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it wraps) broke an open connection -- a reset or a body cut short --
    which says the host was reached (an outage, retried), not that ``--api-base`` is wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if type(current).__name__ in MID_EXCHANGE_ERRORS:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
