"""``treesynth config show``: the effective run configuration of the given ``--config`` and flags, as YAML."""

from __future__ import annotations

import typer

from treesynth.cli._common import cli_command
from treesynth.cli.options import RunOptions

config_app = typer.Typer(help="Inspect run configurations.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group to ``app``."""
    app.add_typer(config_app, name="config")
    config_app.command("show")(show)


@cli_command()
def show(options: RunOptions) -> None:
    """Print the configuration a run with these options would use (defaults, --config file, then flags) as YAML.

    The output is a valid --config file. Without --model or --config the embedded model's defaults apply.
    """
    typer.echo(options.to_config().dump_yaml(), nl=False)
