"""Shared CLI plumbing: one-line errors with the right exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer

from treesynth.errors import ConfigError, TreeSynthError

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Map treesynth errors to one-line messages: usage errors exit 2, runtime failures exit 1."""
    try:
        yield
    except ConfigError as exc:
        fail(str(exc), 2)
    except TreeSynthError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted; re-run the same command to resume", 130)


def guarded(fn: Callable[[], T]) -> T:
    """Call ``fn`` inside :func:`cli_errors`."""
    with cli_errors():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover
