"""The ``lenscal`` command, composed in one place.

The rule: every command lives in ``lenscal/commands/<package>.py`` (a typer app, named after
the package whose code it drives), with the options they share spelled once in
``lenscal/commands/options.py``; this module only lists those apps. An app
with a name becomes a command group (``lenscal registry ...``); an unnamed app adds its
commands at the top level. Services plug ``lenscal serve <name>`` in through the
entry-point group ``lenscal.serve`` (pyproject.toml), so the library never imports them.
Every LenscalError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Annotated

import typer

from lenscal import __version__
from lenscal.command import run_app
from lenscal.logs import configure_logging

#: Modules whose typer ``app`` holds commands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "lenscal.commands.data",
    "lenscal.commands.mock",
    "lenscal.commands.injection",
    "lenscal.commands.training",
    "lenscal.commands.models",
    "lenscal.commands.evaluation",
    "lenscal.commands.scoring",
    "lenscal.commands.selection",
    "lenscal.commands.diagnostics",
    "lenscal.commands.registry",
    "lenscal.commands.ui",
    "lenscal.commands.demo",
)
SERVE_PLUGINS = "lenscal.serve"
#: Packages outside the library (the flows) add top-level commands (demo, run, deploy, worker)
#: through entry points in this group, each a typer app: the library never imports them.
COMMAND_PLUGINS = "lenscal.commands"

app = typer.Typer(
    name="lenscal",
    help="Calibrate strong-lens finders on DESI Legacy Surveys DR10 cutouts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
serve_app = typer.Typer(help="Run a lenscal gRPC service in the foreground.", no_args_is_help=True)


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show library log messages (INFO and up).")
    ] = False,
) -> None:
    configure_logging(verbose=verbose)


@app.command()
def version() -> None:
    """Print the lenscal version."""
    typer.echo(__version__)


def _compose() -> None:
    for name in COMMAND_MODULES:
        sub_app: typer.Typer = importlib.import_module(name).app
        if sub_app.info.name:
            app.add_typer(sub_app)
        else:
            app.registered_commands.extend(sub_app.registered_commands)
            app.registered_groups.extend(sub_app.registered_groups)
    for plugin in sorted(entry_points(group=COMMAND_PLUGINS), key=lambda e: e.name):
        plugin_app: typer.Typer = plugin.load()
        app.registered_commands.extend(plugin_app.registered_commands)
    for plugin in sorted(entry_points(group=SERVE_PLUGINS), key=lambda e: e.name):
        serve_app.command(plugin.name)(plugin.load())
    app.add_typer(serve_app, name="serve")


_compose()


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
