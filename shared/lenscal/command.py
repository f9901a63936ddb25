"""Running a typer app the lenscal way: a LenscalError, or input that fails validation, is
one line on stderr and exit status 2 (never a traceback). Free of the command tree, so a
single service (the torch-free scorer) runs its command without importing the others."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from lenscal.errors import LenscalError
from lenscal.validation import describe


def run_app(app: typer.Typer) -> None:
    try:
        app()
    except LenscalError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ValidationError as exc:  # a typed config or spec built from user input
        typer.echo(f"error: invalid {exc.title}: {describe(exc)}", err=True)
        sys.exit(2)
