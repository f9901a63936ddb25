"""`python -m lenscal_scorer ...`: the scorer alone, without the rest of the `lenscal` command
(whose other groups need torch and Prefect); the torch-free scorer image runs this."""

from __future__ import annotations

import typer

from lenscal.command import run_app
from lenscal_scorer.cli import serve_scorer


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(help="Serve lenscal.scorer.v1.Scorer (same options as `lenscal serve scorer`).")(serve_scorer)
    run_app(app)


if __name__ == "__main__":
    main()
