"""`lenscal score`, `score-survey` and `plan`: score the cutouts of a shard directory or
manifest with a model in this process (--model) or on scorer replicas (--scorer), through
the Scorer interface."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.backends import Services
from lenscal.commands.options import takes_services

app = typer.Typer()


@app.command("score")
@takes_services(scores=True)
def score_command(
    services: Services,
    out: Annotated[Path, typer.Option(help="Output Parquet: galaxy_id, logit, probability.")],
    shards: Annotated[Path | None, typer.Option(help="Shard directory from `lenscal ingest`.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest (packed into shards next to it first).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Only rows of this split.")] = None,
    float32: Annotated[
        bool, typer.Option("--float32", help="Send float32 (default float16: half the bytes).")
    ] = False,
    per_message: Annotated[int, typer.Option(help="Cutouts per message.", min=1)] = 64,
    concurrency: Annotated[int, typer.Option(help="Messages in flight.", min=1)] = 8,
    streaming: Annotated[bool, typer.Option(help="Use ScoreStream instead of unary calls.")] = False,
    chunk: Annotated[int, typer.Option(help="Cutouts read from shards at a time.", min=1)] = 8192,
) -> None:
    """Score every cutout of a shard directory (or manifest) with a model in this process or
    on scorer replicas."""
    import numpy as np
    import pandas as pd

    from lenscal.data.ingest import open_reader
    from lenscal.fsutil import atomic_path
    from lenscal.scoring.rows import score_rows, split_rows

    if not services.remote and not services.models:
        raise typer.BadParameter("give --scorer (scorer replicas) or --model BUNDLE|RUN_ID (in-process)")
    interactive = sys.stderr.isatty()
    reader = open_reader(shards=shards, manifest=manifest, progress=interactive)
    table = reader.manifest()
    rows = split_rows(reader, split)
    wire = {
        "per_message": per_message,
        "wire_dtype": "float32" if float32 else "float16",
        "concurrency": concurrency,
        "streaming": streaming,
    }
    logits, probabilities = np.empty(0, np.float32), np.empty(0)
    with services.open_scorer(**(wire if services.remote else {})) as opened:
        opened.wait_ready()
        if rows.size:
            result = score_rows(
                opened, reader, rows, model=services.model, read_rows=chunk, progress=interactive
            )
            logits, probabilities = result.logits, result.probabilities
    frame = pd.DataFrame(
        {"galaxy_id": table["galaxy_id"].to_numpy()[rows], "logit": logits, "probability": probabilities}
    )
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    typer.echo(f"{len(frame)} cutouts scored on {services.where()} -> {out}")


@app.command("score-survey")
@takes_services(scores=True, many_models=True)
def score_survey_command(
    services: Services,
    shards: Annotated[Path, typer.Option(help="Shard directory from `lenscal ingest` (the survey).")],
    out: Annotated[Path, typer.Option(help="Catalogue directory (parts/, catalog.json, candidates).")],
    meta: Annotated[
        Path | None, typer.Option(help="A meta-learner (`lenscal meta fit`) scored alongside its members.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Only rows of this split.")] = None,
    settings: Annotated[
        str, typer.Option(help="Survey settings (configs/surveys/<name>.yaml) or a YAML file.")
    ] = "dr10",
    preset: Annotated[
        str, typer.Option(help="full (as written) or a preset of the settings (demo).")
    ] = "full",
    top_k: Annotated[
        int | None, typer.Option(help="Candidates kept (default: the settings').", min=1)
    ] = None,
    rank_by: Annotated[
        str | None,
        typer.Option(help="Catalogue column ranking the candidates (default p_<meta or first model>)."),
    ] = None,
    part_rows: Annotated[
        int | None,
        typer.Option(help="Rows per committed part, the resume unit (default: the settings').", min=1),
    ] = None,
    read_rows: Annotated[
        int | None,
        typer.Option(help="Cutouts read from the shards at a time (default: the settings').", min=1),
    ] = None,
    streams_per_replica: Annotated[
        int | None, typer.Option(help="Concurrent streams per replica (default: the settings').", min=1)
    ] = None,
    per_message: Annotated[
        int | None, typer.Option(help="Cutouts per message (default: the settings').", min=1)
    ] = None,
    float32: Annotated[
        bool, typer.Option("--float32", help="Send float32 (default float16: half the bytes).")
    ] = False,
) -> None:
    """Score every cutout of a survey into a partitioned Parquet catalogue (galaxy_id, ra, dec,
    one probability per model, ids and weight hashes in catalog.json), resumable after a
    kill with no row lost or repeated, with a top-k candidate list and its PNG gallery.
    In-process, --model names bundles or training run IDs (repeat for several); with
    --scorer, model names the replicas serve (default: every served model)."""
    import json

    from lenscal.jobs.survey import run_survey_job, survey_job

    job = survey_job(
        shards=shards,
        out=out,
        settings=settings,
        preset=preset,
        split=split,
        meta=meta,
        rank_by=rank_by,
        float32=float32,
        part_rows=part_rows,
        read_rows=read_rows,
        top_k=top_k,
        streams_per_replica=streams_per_replica,
        per_message=per_message,
    )
    job.resolved()  # bad settings fail before any service is opened
    if not services.remote and not services.models:
        raise typer.BadParameter("give --scorer (scorer replicas) or --model BUNDLE|RUN_ID (in-process)")
    summary = run_survey_job(job, services, progress=sys.stderr.isatty())
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
