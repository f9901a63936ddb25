"""`lenscal serve injector` (plugged into the `lenscal` command through the entry-point
group ``lenscal.serve``, so the library never imports this service)."""

from __future__ import annotations

from typing import Annotated

import typer

from lenscal.device import DEVICE_HELP


def serve_injector(
    port: Annotated[int, typer.Option(help="Port (0 picks a free one and prints it).")] = 50052,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port (0: off).")] = 0,
    workers: Annotated[int, typer.Option(help="RPC handler threads.", min=1)] = 8,
) -> None:
    """Serve lenscal.injector.v1.Injector (Render, Inject) with health, reflection and metrics."""
    from lenscal_injector.server import serve

    serve(port=port, host=host, device=device, metrics_port=metrics_port, max_workers=workers)
