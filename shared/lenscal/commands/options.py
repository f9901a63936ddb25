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

A command declares what it does with ``@takes_services(scores=..., injects=...)`` and one
parameter ``services: Services``: the decorator adds the options (spelled once, here) to its
signature and hands the command the ``lenscal.backends.Services`` they chose.
tests/test_cli.py walks every command's ``--help`` to check that each one that scores or
injects accepts them.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from lenscal.backends import Services
from lenscal.device import DEVICE_HELP
from lenscal.security import TLS_CA_ENV, TOKEN_ENV

#: Where --help lists the shared options.
PANEL = "Services (shared by every command that scores or injects)"


def _option(*names: str, **settings: Any) -> Any:
    return typer.Option(*names, rich_help_panel=PANEL, **settings)


TokenFile = Annotated[
    Path | None,
    _option("--token-file", envvar=TOKEN_ENV, metavar="FILE", help="Bearer token file for the services."),
]
TlsCa = Annotated[
    Path | None,
    _option(
        "--tls-ca",
        envvar=TLS_CA_ENV,
        metavar="FILE",
        help="PEM CA certificate of TLS services (none: plain TCP).",
    ),
]
Scorers = Annotated[
    list[str] | None,
    _option(
        "--scorer",
        metavar="HOST:PORT",
        help="Scorer service host:port; repeat for replicas (round-robin). None: in-process.",
    ),
]
EndpointAlias = Annotated[
    list[str] | None,
    _option("--endpoint", hidden=True, metavar="HOST:PORT", help="Deprecated: the old spelling of --scorer."),
]
InjectorAddress = Annotated[
    str | None,
    _option(
        "--injector",
        metavar="HOST:PORT",
        help="Injector service host:port (default: render in this process).",
    ),
]
ModelRef = Annotated[
    str,
    _option(
        "--model",
        metavar="BUNDLE|RUN_ID|NAME",
        help="A bundle directory or a training run ID/alias in the registry; with --scorer, a model "
        "name the scorer serves (default: its first).",
    ),
]
ModelRefs = Annotated[
    list[str] | None,
    _option(
        "--model",
        metavar="BUNDLE|RUN_ID|NAME",
        help="A bundle directory or a training run ID/alias (repeat for several); with --scorer, a "
        "model name the scorer serves.",
    ),
]
Device = Annotated[
    str, _option("--device", metavar="DEVICE", help=f"In-process scoring and rendering: {DEVICE_HELP}.")
]
RegistryUrl = Annotated[
    str | None,
    _option(
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


F = TypeVar("F", bound=Callable[..., Any])


def takes_services(
    *, scores: bool = True, injects: bool = False, many_models: bool = False
) -> Callable[[F], F]:
    """Give the decorated command the shared options of what it does (``scores``: --scorer,
    --model (repeatable with ``many_models``), --registry and the hidden --endpoint;
    ``injects``: --injector; either: --token-file, --tls-ca, --device) in place of its
    ``services`` parameter, which receives the Services they chose."""
    shared: dict[str, tuple[Any, Any]] = {}
    if scores:
        shared["model"] = (ModelRefs, None) if many_models else (ModelRef, "")
        shared["scorer"] = (Scorers, None)
        shared["endpoint"] = (EndpointAlias, None)
    if injects:
        shared["injector"] = (InjectorAddress, None)
    shared.update(token_file=(TokenFile, None), tls_ca=(TlsCa, None), device=(Device, "auto"))
    if scores:
        shared["registry"] = (RegistryUrl, None)

    def wrap(command: F) -> F:
        hints = typing.get_type_hints(command, include_extras=True)  # typer reads them resolved
        own = [
            p.replace(annotation=hints[p.name])
            for p in inspect.signature(command).parameters.values()
            if p.name != "services"
        ]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
            for name, (hint, default) in shared.items()
        ]

        @functools.wraps(command)
        def with_services(**values: Any) -> Any:
            chosen = {name: values.pop(name) for name in shared}
            return command(**values, services=services_from(**chosen))

        del with_services.__wrapped__  # typer must see the signature below, not the command's
        with_services.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
        with_services.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        return typing.cast(F, with_services)

    return wrap
