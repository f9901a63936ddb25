"""`lenscal score` and `lenscal serve scorer|injector`: thin commands over the clients
and the service packages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()
serve_app = typer.Typer(help="Run a lenscal gRPC service in the foreground.", no_args_is_help=True)


@app.command("score")
def score_command(
    endpoint: Annotated[list[str], typer.Option(help="Scorer host:port; repeat for replicas (round-robin).")],
    out: Annotated[Path, typer.Option(help="Output Parquet: galaxy_id, logit, probability.")],
    shards: Annotated[Path | None, typer.Option(help="Shard directory from `lenscal ingest`.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest (packed into shards next to it first).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Only rows of this split.")] = None,
    model: Annotated[str, typer.Option(help="Model name on the server (default: its default).")] = "",
    float32: Annotated[
        bool, typer.Option("--float32", help="Send float32 (default float16: half the bytes).")
    ] = False,
    per_message: Annotated[int, typer.Option(help="Cutouts per message.", min=1)] = 64,
    concurrency: Annotated[int, typer.Option(help="Messages in flight.", min=1)] = 8,
    streaming: Annotated[bool, typer.Option(help="Use ScoreStream instead of unary calls.")] = False,
    token_file: Annotated[Path | None, typer.Option(help="Bearer token file.")] = None,
    chunk: Annotated[int, typer.Option(help="Cutouts read from shards at a time.", min=1)] = 8192,
) -> None:
    """Score every cutout of a shard directory (or manifest) on scorer endpoints."""
    import numpy as np
    import pandas as pd

    from lenscal.clients.scorer import ScorerClient
    from lenscal.data.shards import ShardReader
    from lenscal.evaluation.evaluate import open_shards
    from lenscal.fsutil import atomic_path
    from lenscal.progress import progress_bar

    if (shards is None) == (manifest is None):
        raise typer.BadParameter("give --shards or --manifest")
    reader = ShardReader(shards) if shards is not None else open_shards(manifest, None, sys.stderr.isatty())  # type: ignore[arg-type]
    table = reader.manifest()
    rows = np.arange(len(reader)) if split is None else np.flatnonzero(table["split"].to_numpy() == split)
    token = token_file.read_text().strip() if token_file else None
    logits, probabilities = [], []
    with (
        ScorerClient(
            endpoint, per_message=per_message, wire_dtype="float32" if float32 else "float16", token=token
        ) as client,
        progress_bar(rows.size, "score", enabled=sys.stderr.isatty()) as advance,
    ):
        client.wait_ready()
        for start in range(0, rows.size, chunk):
            block = rows[start : start + chunk]
            result = client.score(
                reader.read(block, dtype=None),
                model=model,
                concurrency=concurrency,
                streaming=streaming,
                progress=advance,
            )
            logits.append(result.logits)
            probabilities.append(result.probabilities)
    frame = pd.DataFrame(
        {
            "galaxy_id": table["galaxy_id"].to_numpy()[rows],
            "logit": np.concatenate(logits) if logits else [],
            "probability": np.concatenate(probabilities) if probabilities else [],
        }
    )
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    typer.echo(f"{len(frame)} cutouts scored on {', '.join(endpoint)} -> {out}")


@serve_app.command("scorer")
def serve_scorer(
    model: Annotated[list[Path], typer.Option(help="Checkpoint bundle; repeat for several models.")],
    port: Annotated[int, typer.Option(help="Port (0 picks a free one and prints it).")] = 50051,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    engine: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    workers: Annotated[
        int, typer.Option(help="Server processes sharing the port (SO_REUSEPORT).", min=1)
    ] = 1,
    max_batch_size: Annotated[int, typer.Option(help="Cutouts per device batch.", min=1)] = 512,
    batch_wait_timeout_s: Annotated[
        float, typer.Option(help="Longest wait for a batch to fill, s.", min=0)
    ] = 0.005,
    max_queue: Annotated[int, typer.Option(help="Cutouts waiting before RESOURCE_EXHAUSTED.", min=1)] = 16384,
    metrics_port: Annotated[int, typer.Option(help="Prometheus port (worker i uses port + i); 0: off.")] = 0,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain for TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for TLS.")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File with the bearer token clients must send.")
    ] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (GPU).")] = False,
) -> None:
    """Serve lenscal.scorer.v1.Scorer: cross-request micro-batching, health, reflection, metrics."""
    from lenscal_scorer.server import ScorerOptions, serve

    serve(
        ScorerOptions(
            models=[str(m) for m in model],
            port=port,
            host=host,
            device=device,
            engine=engine,
            workers=workers,
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=batch_wait_timeout_s,
            max_queue=max_queue,
            metrics_port=metrics_port,
            tls_cert=str(tls_cert) if tls_cert else None,
            tls_key=str(tls_key) if tls_key else None,
            token_file=str(token_file) if token_file else None,
            compile=compile_model,
        )
    )


@serve_app.command("injector")
def serve_injector(
    port: Annotated[int, typer.Option(help="Port (0 picks a free one and prints it).")] = 50052,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port (0: off).")] = 0,
    workers: Annotated[int, typer.Option(help="RPC handler threads.", min=1)] = 8,
) -> None:
    """Serve lenscal.injector.v1.Injector (Render, Inject) with health, reflection and metrics."""
    import logging

    from lenscal_injector.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(port=port, host=host, device=device, metrics_port=metrics_port, max_workers=workers)
