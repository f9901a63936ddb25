"""`lenscal demo`: the embedded-defaults pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo-output"),
    n: Annotated[int, typer.Option(help="Number of mock-survey cutouts.", min=20)] = 300,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Run the embedded defaults: mock survey -> shards -> split check -> injection -> preprocessing."""
    from lenscal.demo.run import run_demo

    summary = run_demo(out, n=n, seed=seed, progress=sys.stderr.isatty())
    typer.echo(json.dumps(summary, indent=2))
