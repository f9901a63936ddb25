"""`lenscal serve injector` (plugged into the `lenscal` command through the entry-point
group ``lenscal.serve``, so the library never imports this service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lenscal.device import DEVICE_HELP


def serve_injector(
    port: Annotated[
        int, typer.Option(help="Port (0 picks a free one and prints it).", min=0, max=65535)
    ] = 50052,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus /metrics port (0: off).", min=0, max=65535)
    ] = 0,
    max_requests: Annotated[
        int, typer.Option(help="Calls rendering at once; more get RESOURCE_EXHAUSTED.", min=1)
    ] = 8,
    data_root: Annotated[
        list[Path] | None,
        typer.Option(
            help="Directory under which shard hosts may be read (repeat); none: shard hosts refused."
        ),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain for TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for TLS.")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File with the bearer token clients must send.")
    ] = None,
) -> None:
    """Serve lenscal.injector.v1.Injector (Render, Inject) with health, reflection and metrics."""
    from lenscal_injector.server import serve

    serve(
        port=port,
        host=host,
        device=device,
        metrics_port=metrics_port,
        max_requests=max_requests,
        data_roots=[str(d) for d in data_root or []],
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
        token_file=str(token_file) if token_file else None,
    )
