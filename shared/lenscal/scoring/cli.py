"""`lenscal score`: score the cutouts of a shard directory or manifest with a model in this
process (--model) or on scorer replicas (--endpoint), through the Scorer interface."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.device import DEVICE_HELP

app = typer.Typer()


@app.command("score")
def score_command(
    out: Annotated[Path, typer.Option(help="Output Parquet: galaxy_id, logit, probability.")],
    endpoint: Annotated[
        list[str] | None, typer.Option(help="Scorer host:port; repeat for replicas (round-robin).")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="With --endpoint: a model name on the server; without: a bundle to score in-process."
        ),
    ] = "",
    shards: Annotated[Path | None, typer.Option(help="Shard directory from `lenscal ingest`.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest (packed into shards next to it first).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Only rows of this split.")] = None,
    device: Annotated[str, typer.Option(help=f"In-process only: {DEVICE_HELP}.")] = "auto",
    float32: Annotated[
        bool, typer.Option("--float32", help="Send float32 (default float16: half the bytes).")
    ] = False,
    per_message: Annotated[int, typer.Option(help="Cutouts per message.", min=1)] = 64,
    concurrency: Annotated[int, typer.Option(help="Messages in flight.", min=1)] = 8,
    streaming: Annotated[bool, typer.Option(help="Use ScoreStream instead of unary calls.")] = False,
    token_file: Annotated[Path | None, typer.Option(help="Bearer token file.")] = None,
    chunk: Annotated[int, typer.Option(help="Cutouts read from shards at a time.", min=1)] = 8192,
) -> None:
    """Score every cutout of a shard directory (or manifest) with a model bundle or on
    scorer endpoints."""
    import numpy as np
    import pandas as pd

    from lenscal.backends import open_scorer
    from lenscal.data.ingest import open_reader
    from lenscal.fsutil import atomic_path
    from lenscal.rpc.auth import read_token
    from lenscal.scoring.rows import score_rows
    from lenscal.scoring.survey import survey_rows

    interactive = sys.stderr.isatty()
    reader = open_reader(shards=shards, manifest=manifest, progress=interactive)
    table = reader.manifest()
    rows = survey_rows(reader, split)
    if endpoint:
        scorer = open_scorer(
            endpoints=endpoint,
            token=read_token(token_file) if token_file else None,
            per_message=per_message,
            wire_dtype="float32" if float32 else "float16",
            concurrency=concurrency,
            streaming=streaming,
        )
        served_model, where = model, ", ".join(endpoint)
    else:
        if not model:
            raise typer.BadParameter("give --endpoint (scorer replicas) or --model BUNDLE (in-process)")
        scorer = open_scorer(model=model, device=device)
        served_model, where = "", model
    logits, probabilities = np.empty(0, np.float32), np.empty(0)
    with scorer:
        scorer.wait_ready()
        if rows.size:
            result = score_rows(
                scorer, reader, rows, model=served_model, read_rows=chunk, progress=interactive
            )
            logits, probabilities = result.logits, result.probabilities
    frame = pd.DataFrame(
        {"galaxy_id": table["galaxy_id"].to_numpy()[rows], "logit": logits, "probability": probabilities}
    )
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    typer.echo(f"{len(frame)} cutouts scored on {where} -> {out}")
