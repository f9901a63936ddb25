"""`lenscal serve scorer` (plugged into the `lenscal` command through the entry-point group
``lenscal.serve``, so the library never imports this service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lenscal.device import DEVICE_HELP


def serve_scorer(
    model: Annotated[list[Path], typer.Option(help="Checkpoint bundle; repeat for several models.")],
    port: Annotated[
        int, typer.Option(help="Port (0 picks a free one and prints it).", min=0, max=65535)
    ] = 50051,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    engine: Annotated[
        str, typer.Option(help="auto (ONNX Runtime on CPU, torch bf16 on CUDA), torch or onnx.")
    ] = "auto",
    workers: Annotated[
        int, typer.Option(help="Server processes sharing the port (SO_REUSEPORT).", min=1)
    ] = 1,
    max_batch_size: Annotated[int, typer.Option(help="Cutouts per device batch.", min=1)] = 512,
    batch_wait_timeout_s: Annotated[
        float, typer.Option(help="Longest wait for a batch to fill, s.", min=0)
    ] = 0.005,
    max_queue: Annotated[int, typer.Option(help="Cutouts waiting before RESOURCE_EXHAUSTED.", min=1)] = 16384,
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus port (worker i uses port + i); 0: off.", min=0, max=65535)
    ] = 0,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain for TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for TLS.")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File with the bearer token clients must send.")
    ] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (GPU).")] = False,
    max_unary: Annotated[
        int, typer.Option(help="Score calls handled at once; more get RESOURCE_EXHAUSTED.", min=1)
    ] = 64,
    max_streams: Annotated[
        int, typer.Option(help="ScoreStream calls open at once; more get RESOURCE_EXHAUSTED.", min=1)
    ] = 16,
    stream_idle_timeout_s: Annotated[
        float, typer.Option(help="A stream with no message for this long is closed, s.", min=0.1)
    ] = 60.0,
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
            max_unary=max_unary,
            max_streams=max_streams,
            stream_idle_timeout_s=stream_idle_timeout_s,
        )
    )
