"""The command-line vocabulary of every command that scores or injects, spelled once.

    --scorer ADDR      scorer service host:port, repeatable (replicas, round-robin);
                       none: score in this process
    --endpoint ADDR    hidden, deprecated spelling of --scorer (``lenscal score`` had it)
    --injector ADDR    injector service host:port; none: render in this process
    --model REF        a bundle directory, a training run ID or alias in the registry; with
                       --scorer, a model name the scorer serves
    --token-file F     bearer token for the services ($LENSCAL_TOKEN_FILE)
    --tls-ca F         PEM CA certificate of TLS services ($LENSCAL_TLS_CA)
    --device D         in-process scoring and rendering device
    --registry URL     registry database (--registry-url is the older spelling)

``services_from`` turns them into one ``lenscal.backends.Services``; tests/test_cli.py walks
every command's ``--help`` to check that each one that scores or injects accepts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lenscal.backends import Services
from lenscal.device import DEVICE_HELP
from lenscal.security import TLS_CA_ENV, TOKEN_ENV

TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file", envvar=TOKEN_ENV, metavar="FILE", help="Bearer token file for the services."
    ),
]
TlsCa = Annotated[
    Path | None,
    typer.Option(
        "--tls-ca",
        envvar=TLS_CA_ENV,
        metavar="FILE",
        help="PEM CA certificate of TLS services (none: plain TCP).",
    ),
]
Scorers = Annotated[
    list[str] | None,
    typer.Option(
        "--scorer",
        metavar="HOST:PORT",
        help="Scorer service host:port; repeat for replicas (round-robin). None: in-process.",
    ),
]
EndpointAlias = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint", hidden=True, metavar="HOST:PORT", help="Deprecated: the old spelling of --scorer."
    ),
]
InjectorAddress = Annotated[
    str | None,
    typer.Option(
        "--injector",
        metavar="HOST:PORT",
        help="Injector service host:port (default: render in this process).",
    ),
]
ModelRef = Annotated[
    str,
    typer.Option(
        "--model",
        metavar="BUNDLE|RUN_ID|NAME",
        help="A bundle directory or a training run ID/alias in the registry; with --scorer, a model "
        "name the scorer serves (default: its first).",
    ),
]
ModelRefs = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        metavar="BUNDLE|RUN_ID|NAME",
        help="A bundle directory or a training run ID/alias (repeat for several); with --scorer, a "
        "model name the scorer serves.",
    ),
]
Device = Annotated[
    str, typer.Option("--device", metavar="DEVICE", help=f"In-process scoring and rendering: {DEVICE_HELP}.")
]
RegistryUrl = Annotated[
    str | None,
    typer.Option(
        "--registry",
        "--registry-url",
        metavar="URL",
        help="Registry database URL (default: $LENSCAL_REGISTRY_URL, else SQLite in $LENSCAL_HOME).",
    ),
]

#: The options a command that scores, or injects, accepts (checked by the tests).
SCORING_OPTIONS = ("--scorer", "--model", "--token-file", "--tls-ca", "--device", "--registry")
INJECTING_OPTIONS = ("--injector", "--token-file", "--tls-ca", "--device")


def services_from(
    *,
    scorer: list[str] | None = None,
    endpoint: list[str] | None = None,
    injector: str | None = None,
    model: str | list[str] | None = None,
    token_file: Path | None = None,
    tls_ca: Path | None = None,
    device: str = "auto",
    registry: str | None = None,
) -> Services:
    """The shared options as one Services; ``--endpoint`` joins ``--scorer`` with a warning."""
    if endpoint:
        typer.echo("note: --endpoint is deprecated; use --scorer (same meaning)", err=True)
    models = [model] if isinstance(model, str) else list(model or [])
    return Services(
        scorers=tuple([*(scorer or []), *(endpoint or [])]),
        injector=injector or None,
        models=tuple(m for m in models if m),
        token_file=token_file,
        tls_ca=tls_ca,
        device=device,
        registry=registry,
    )
