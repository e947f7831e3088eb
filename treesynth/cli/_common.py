"""Shared CLI plumbing: one error mapping for every command, and option groups declared once.

Every command is decorated with :func:`cli_command`, which

* runs it inside :func:`cli_errors` (usage errors exit 2, runtime failures 1, Ctrl-C 130, each one line), and
* spreads each parameter typed with a dataclass (an *option group* such as
  :class:`~treesynth.cli.options.RunOptions`) into that dataclass's fields, so Typer sees one plain option per
  field, and packs the parsed values back into one instance before the command runs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, get_type_hints

import typer

try:  # typer >= 0.29 vendors its own click; re-exported for cli/__init__
    from typer._click.exceptions import ClickException as ClickException
    from typer._click.exceptions import NoArgsIsHelpError as NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer uses the click package
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]  # noqa: F401

from treesynth.errors import RESUME_HINT, ConfigError, TreeSynthError
from treesynth.redact import redact

INTERRUPTED = f"interrupted; {RESUME_HINT}"
"""The line a Ctrl-C leaves (exit 130): every run directory, sweep and study resumes where it stopped."""

Command = Callable[..., None]


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` (credentials redacted) on stderr and exit with ``code``."""
    print(f"error: {redact(message)}", file=sys.stderr)
    raise typer.Exit(code)


def usage_line(exc: ClickException) -> str:
    """Click's own error (bad option value, unknown command...) as one line with a pointer to ``--help``."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    return f"{message}; see '{ctx.command_path} --help'" if ctx is not None else message


@contextmanager
def cli_errors() -> Iterator[None]:
    """Map treesynth errors to one-line messages: usage errors exit 2, runtime failures 1, Ctrl-C 130."""
    try:
        yield
    except ConfigError as exc:
        fail(str(exc), 2)
    except TreeSynthError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail(INTERRUPTED, 130)


def cli_command(*, omit: Collection[str] = ()) -> Callable[[Command], Command]:
    """Decorate a command: option groups spread into plain options (minus ``omit``), errors via :func:`cli_errors`.

    The returned function is what Typer registers; its signature lists the command's own parameters with
    each group's fields in the group parameter's place, all keyword-only (Typer passes them by name).
    """

    def decorate(fn: Command) -> Command:
        params, groups = _spread(fn, frozenset(omit))
        unknown = set(omit) - {f.name for group, _ in groups.values() for f in dataclasses.fields(group)}
        if unknown:
            raise TypeError(f"{fn.__name__}: omit names no option-group field: {sorted(unknown)}")

        @functools.wraps(fn)
        def command(**values: Any) -> None:
            for name, (group, fields) in groups.items():
                values[name] = group(**{field: values.pop(field) for field in fields})
            with cli_errors():
                fn(**values)

        command.__doc__ = unwrapped(fn.__doc__)
        command.__dict__["__signature__"] = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__dict__["error_mapping"] = cli_errors
        return command

    return decorate


def unwrapped(doc: str | None) -> str | None:
    """``doc`` with each paragraph on one line: ``--help`` keeps a docstring's line breaks, so the source's
    wrapping would break sentences on every terminal; the terminal's own wrapping is the right one."""
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def _spread(fn: Command, omit: frozenset[str]) -> tuple[list[inspect.Parameter], dict[str, tuple[type, list[str]]]]:
    """``fn``'s parameters with every dataclass-typed one replaced by its fields, and the groups to pack."""
    hints = get_type_hints(fn, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for param in inspect.signature(fn).parameters.values():
        hint = hints[param.name]
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hint))
            continue
        field_hints = get_type_hints(hint, include_extras=True)
        fields = [f for f in dataclasses.fields(hint) if f.name not in omit]
        groups[param.name] = (hint, [f.name for f in fields])
        params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=field_hints[f.name],
                                     default=inspect.Parameter.empty if f.default is dataclasses.MISSING
                                     else f.default) for f in fields]
    return params, groups
