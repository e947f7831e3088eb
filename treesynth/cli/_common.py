"""Shared CLI plumbing: one-line errors with the right exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer

try:  # typer >= 0.29 vendors its own click; re-exported for cli/__init__
    from typer._click.exceptions import ClickException as ClickException
    from typer._click.exceptions import NoArgsIsHelpError as NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer uses the click package
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]  # noqa: F401

from treesynth.errors import ConfigError, TreeSynthError

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def usage_line(exc: ClickException) -> str:
    """Click's own error (bad option value, unknown command...) as one line with a pointer to ``--help``."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    return f"{message}; see '{ctx.command_path} --help'" if ctx is not None else message


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
