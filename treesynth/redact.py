"""Keep credentials out of everything treesynth writes or prints: ledgers, ``run.json``, exports and messages.

Provider errors are made of server text, and a server (or a proxy in front of it) may quote the request's
``Authorization`` header or the key it refused. :func:`redact` replaces, in such text, the value of every
environment variable whose name marks a credential (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``...) and anything
shaped like a bearer token or a provider key (``Bearer …``, ``sk-…``, ``hf_…``) with ``[redacted]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_SECRET_SHAPE = re.compile(r"(?i)(?<![A-Za-z0-9])(bearer\s+|(?:sk-ant-|sk-|hf_|gsk_|xai-))[A-Za-z0-9._~+/=-]{8,}")
_MIN_SECRET = 8
"""Shorter environment values are not treated as secrets (they would redact ordinary words)."""


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with credential values (of ``environ``, default the process environment) and token shapes
    replaced by ``[redacted]``."""
    for name, value in (os.environ if environ is None else environ).items():
        if len(value) >= _MIN_SECRET and value in text and _SECRET_NAME.search(name):
            text = text.replace(value, REDACTED)
    return _SECRET_SHAPE.sub(lambda match: match.group(1) + REDACTED, text)
