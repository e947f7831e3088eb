"""The ``treesynth`` command line: one Typer app, commands registered from small modules."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from treesynth.cli._common import ClickException, NoArgsIsHelpError, usage_line

app = typer.Typer(
    name="treesynth",
    help="Tree-guided synthesis of diverse datasets from one sentence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


def _print_version(value: bool) -> None:
    if value:
        from treesynth import __version__

        typer.echo(f"treesynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Tree-guided synthesis of diverse datasets from one sentence."""


def _register_commands() -> None:
    from treesynth.cli import balance, bench, compile, config, evaluate, export, run, tree, tune

    run.register(app)
    balance.register(app)
    tree.register(app)
    evaluate.register(app)
    bench.register(app)
    compile.register(app)
    tune.register(app)
    config.register(app)
    export.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point; click's own usage errors print one ``error:`` line (exit 2), not a box."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError:
        code = 2  # the help was printed already
    except ClickException as exc:
        print(f"error: {usage_line(exc)}", file=sys.stderr)
        code = exc.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
