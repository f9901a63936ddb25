"""Command-line options every command that talks to a service shares, spelled once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lenscal.security import TLS_CA_ENV, TOKEN_ENV

TokenFile = Annotated[
    Path | None,
    typer.Option("--token-file", envvar=TOKEN_ENV, help="Bearer token file for the services."),
]
TlsCa = Annotated[
    Path | None,
    typer.Option(
        "--tls-ca",
        envvar=TLS_CA_ENV,
        help="PEM CA certificate of TLS services (none: plain TCP).",
    ),
]
