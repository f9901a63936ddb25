"""`lenscal score`: score the cutouts of a shard directory or manifest with a model in this
process (--model) or on scorer replicas (--endpoint), through the Scorer interface."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lenscal.device import DEVICE_HELP
from lenscal.options import TlsCa, TokenFile
from lenscal.scoring.api import Scorer

app = typer.Typer()


def _replicas(
    endpoint: list[str],
    token_file: Path | None,
    tls_ca: Path | None,
    float32: bool,
    per_message: int,
    **options: Any,
) -> Scorer:
    """A GrpcScorer over ``endpoint`` with the commands' shared wire options."""
    from lenscal.backends import open_scorer
    from lenscal.security import client_auth

    auth = client_auth(token_file, tls_ca)
    return open_scorer(
        endpoints=endpoint,
        auth=auth,
        per_message=per_message,
        wire_dtype="float32" if float32 else "float16",
        **options,
    )


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
    token_file: TokenFile = None,
    tls_ca: TlsCa = None,
    chunk: Annotated[int, typer.Option(help="Cutouts read from shards at a time.", min=1)] = 8192,
) -> None:
    """Score every cutout of a shard directory (or manifest) with a model bundle or on
    scorer endpoints."""
    import numpy as np
    import pandas as pd

    from lenscal.backends import open_scorer
    from lenscal.data.ingest import open_reader
    from lenscal.fsutil import atomic_path
    from lenscal.scoring.rows import score_rows, split_rows

    interactive = sys.stderr.isatty()
    reader = open_reader(shards=shards, manifest=manifest, progress=interactive)
    table = reader.manifest()
    rows = split_rows(reader, split)
    if endpoint:
        scorer = _replicas(
            endpoint, token_file, tls_ca, float32, per_message, concurrency=concurrency, streaming=streaming
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


@app.command("score-survey")
def score_survey_command(
    shards: Annotated[Path, typer.Option(help="Shard directory from `lenscal ingest` (the survey).")],
    out: Annotated[Path, typer.Option(help="Catalogue directory (parts/, catalog.json, candidates).")],
    endpoint: Annotated[
        list[str] | None,
        typer.Option(help="Scorer replica host:port; repeat (round-robin, several streams each)."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="In-process: a bundle directory or training run ID (repeat for several models). With"
            " --endpoint: a model name the replicas serve (repeat; default every served model)."
        ),
    ] = None,
    meta: Annotated[
        Path | None, typer.Option(help="A meta-learner (`lenscal meta fit`) scored alongside its members.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Only rows of this split.")] = None,
    top_k: Annotated[int, typer.Option(help="Candidates kept (candidates.parquet).", min=1)] = 1000,
    rank_by: Annotated[
        str | None,
        typer.Option(help="Catalogue column ranking the candidates (default p_<meta or first model>)."),
    ] = None,
    part_rows: Annotated[
        int, typer.Option(help="Rows per committed part (the resume unit).", min=1)
    ] = 65_536,
    read_rows: Annotated[int, typer.Option(help="Cutouts read from the shards at a time.", min=1)] = 4096,
    streams_per_replica: Annotated[int, typer.Option(help="Concurrent streams per replica.", min=1)] = 4,
    per_message: Annotated[int, typer.Option(help="Cutouts per message.", min=1)] = 64,
    float32: Annotated[
        bool, typer.Option("--float32", help="Send float32 (default float16: half the bytes).")
    ] = False,
    token_file: TokenFile = None,
    tls_ca: TlsCa = None,
    device: Annotated[str, typer.Option(help=f"In-process only: {DEVICE_HELP}.")] = "auto",
) -> None:
    """Score every cutout of a survey into a partitioned Parquet catalogue (galaxy_id, ra, dec,
    one probability per model, ids and weight hashes in catalog.json), resumable after a
    kill with no row lost or repeated, with a top-k candidate list and its PNG gallery."""
    import json

    from lenscal.backends import bundle_path, open_scorer
    from lenscal.data.shards import ShardReader
    from lenscal.scoring.meta import load_meta
    from lenscal.scoring.survey import score_survey

    reader = ShardReader(shards)
    learner = load_meta(meta) if meta else None
    if endpoint:
        scorer = _replicas(
            endpoint,
            token_file,
            tls_ca,
            float32,
            per_message,
            streaming=True,
            concurrency=streams_per_replica * len(endpoint),
        )
        names = list(model or [])
    else:
        if not model:
            raise typer.BadParameter("give --endpoint (scorer replicas) or --model BUNDLE|ID (in-process)")
        scorer = open_scorer(model=[bundle_path(m) for m in model], device=device)
        names = []
    with scorer:
        scorer.wait_ready()
        summary = score_survey(
            scorer,
            reader,
            out,
            models=names,
            meta=learner,
            split=split,
            part_rows=part_rows,
            read_rows=read_rows,
            top_k=top_k,
            rank_by=rank_by,
            progress=sys.stderr.isatty(),
        )
    typer.echo(json.dumps({k: summary[k] for k in ("rows", "candidates", "gallery")}))
    typer.echo(f"catalogue: {out / 'parts'} ({len(summary['models'])} model(s))")


@app.command("plan")
def plan_command(
    n: Annotated[int, typer.Option(help="Cutouts to score (DR10: ~43,000,000).", min=1)],
    rates: Annotated[
        Path | None,
        typer.Option(help="Rates file (default bench/out/rates-gpu.json, else rates-cpu.json)."),
    ] = None,
    gpus: Annotated[int, typer.Option(help="Devices, one scorer replica each.", min=1)] = 1,
    readers: Annotated[
        int | None, typer.Option(help="Shard-reading client processes (default 4 per device).", min=1)
    ] = None,
) -> None:
    """Expected wall time to score N cutouts, and the stage that sets it (read, wire,
    preprocess, model), from measured rates."""
    from lenscal.scoring.plan import plan, read_rates

    if rates is None:  # what `make bench-gpu`, else bench/survey.py, measured here
        found = [
            p for p in (Path("bench/out/rates-gpu.json"), Path("bench/out/rates-cpu.json")) if p.is_file()
        ]
        rates = found[0] if found else Path("bench/out/rates-gpu.json")
    for line in plan(n, read_rates(rates), gpus=gpus, readers=readers).lines():
        typer.echo(line)
