"""`lenscal ui`: serve the read-only web UI over the registry and the results roots."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from lenscal.errors import LenscalError

app = typer.Typer()
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("ui")
def ui(
    host: Annotated[
        str, typer.Option(help="Address to bind; another than loopback needs --token-file.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = DEFAULT_PORT,
    results: Annotated[
        list[Path] | None,
        typer.Option(
            "--results", help="A results root to show (repeatable; default $LENSCAL_RESULTS or ./results)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the token every request must carry.")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", help="Registry URL (default: $LENSCAL_REGISTRY_URL or SQLite in $LENSCAL_HOME)."
        ),
    ] = None,
    insecure_bind: Annotated[
        bool,
        typer.Option(
            "--insecure-bind",
            help="Bind a non-loopback --host without a token: only inside a container whose port is "
            "published on the host's loopback (the compose ui service).",
        ),
    ] = False,
) -> None:
    """Browse the registry and every result (reports, figures, grids, comparisons) in a
    browser. Read-only: nothing it serves writes a file or a record."""
    from lenscal.security import read_token

    token = read_token(token_file) if token_file is not None else None
    if not is_loopback(host) and token is None and not insecure_bind:
        raise LenscalError(
            f"--host {host}: serving beyond this machine needs --token-file "
            "(every request must then carry it)"
        )
    if not 0 < port < 65536:
        raise LenscalError(f"--port {port}: not a TCP port")
    roots = list(results or [Path(os.environ.get("LENSCAL_RESULTS") or "results")])
    import uvicorn

    from lenscal.ui.app import create_app

    application = create_app(registry, roots, token)
    shown = ", ".join(f"{r.name} = {r.path}" for r in application.state.ui.roots.roots)
    typer.echo(f"lenscal ui: http://{host}:{port}/  (results: {shown}; read-only)")
    uvicorn.run(application, host=host, port=port, log_level="warning")
