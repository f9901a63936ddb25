"""`lenscal demo-data`: the demo's mock survey, packed into shards, on its own (the container
stack's first step; `lenscal demo` makes it too, then trains and runs the flows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command("demo-data")
def demo_data_command(
    out: Annotated[Path, typer.Option(help="Output directory (shards in OUT/shards).")],
    n: Annotated[int, typer.Option(help="Mock-survey cutouts.", min=100)] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the mock survey.")] = 0,
) -> None:
    """A mock DR10-like survey (lenses, hard confusers, masked pixels) packed into float16
    shards, its split checked, and an injection gallery; reuses what an earlier run made."""
    from lenscal.demo.run import prepare_demo_data

    if (out / "summary.json").is_file() and (out / "shards" / "manifest.parquet").is_file():
        typer.echo(f"reused: {out / 'shards'}")
        return
    summary = prepare_demo_data(out, n=n, seed=seed)
    typer.echo(json.dumps({k: summary[k] for k in ("cutouts", "lenses", "shards", "split_check")}))
    typer.echo(f"shards: {out / 'shards'}")
