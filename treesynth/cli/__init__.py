"""The ``treesynth`` command line: one Typer app, commands registered from small modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="treesynth",
    help="Tree-guided synthesis of diverse datasets from one sentence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    from treesynth.cli import balance, bench, compile, evaluate, run, tree, tune

    run.register(app)
    balance.register(app)
    tree.register(app)
    evaluate.register(app)
    bench.register(app)
    compile.register(app)
    tune.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()
