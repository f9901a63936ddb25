"""Choosing a Scorer or Injector: in-process when given a model bundle (or nothing, for the
injector), over gRPC when given service addresses. Grids, diagnostics, flows and commands
call these and then use only the interfaces (lenscal.scoring.api, lenscal.injection.api)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenscal.errors import LenscalError
from lenscal.injection.api import Injector
from lenscal.scoring.api import Scorer
from lenscal.security import ClientAuth


def open_scorer(
    *,
    model: str | Path | Sequence[str | Path] | None = None,
    endpoints: str | Sequence[str] | None = None,
    engine: str = "auto",
    device: str = "auto",
    token: str | None = None,
    root_certificates: bytes | None = None,
    auth: ClientAuth | None = None,
    **grpc_options: object,
) -> Scorer:
    """A LocalScorer over bundle(s) ``model``, or a GrpcScorer over ``endpoints`` (with the
    token and CA of ``auth``, or those given one by one)."""
    if auth is not None:
        token, root_certificates = auth.token, auth.root_certificates
    given_endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints or [])
    if (model is None or model == []) == (not given_endpoints):
        raise LenscalError("give a model bundle (score in this process) or scorer endpoint(s), not both")
    if given_endpoints:
        from lenscal.rpc.scorer_client import GrpcScorer

        return GrpcScorer(
            given_endpoints,
            token=token,
            root_certificates=root_certificates,
            **grpc_options,  # type: ignore[arg-type]
        )
    from lenscal.scoring.local import LocalScorer

    assert model is not None
    return LocalScorer(model, engine=engine, device=device)


def open_injector(
    *,
    endpoint: str | None = None,
    device: str = "auto",
    token: str | None = None,
    root_certificates: bytes | None = None,
    auth: ClientAuth | None = None,
) -> Injector:
    """A LocalInjector (rendering on ``device`` in this process), or a GrpcInjector."""
    if auth is not None:
        token, root_certificates = auth.token, auth.root_certificates
    if endpoint:
        from lenscal.rpc.injector_client import GrpcInjector

        return GrpcInjector(endpoint, token=token, root_certificates=root_certificates)
    from lenscal.injection.local import LocalInjector

    return LocalInjector(device=device)


def bundle_path(ref: str | Path, registry_url: str | None = None) -> Path:
    """A checkpoint bundle directory from a path, or from a training run's registry ID (the
    bundle whose seal it recorded as an artifact, e.g. ``gen6`` -> runs/gen6/best)."""
    path = Path(ref)
    if (path / "model.json").is_file():
        return path
    from lenscal.registry.store import Registry

    registry = Registry(registry_url)
    if registry.exists(str(ref)):
        record = registry.get(str(ref))
        for artifact in record.artifacts:
            seal = Path(artifact["path"])
            if seal.name == "seal.json" and (seal.parent / "model.json").is_file():
                return seal.parent
        raise LenscalError(
            f"model {str(ref)!r}: registry record {record.id} lists no bundle that still exists"
        )
    raise LenscalError(
        f"model {str(ref)!r}: not a bundle directory (no model.json) nor a run ID in the registry"
    )


@dataclass(frozen=True)
class Services:
    """Where a job scores and injects, as the shared command-line options chose it
    (lenscal.commands.options): scorer replicas or a model bundle in this process, an
    injector service or in-process rendering, and how to reach the services.

    ``models``: with ``scorers``, model names the scorer serves (none: its default); without,
    bundle directories or training run IDs/aliases in ``registry``."""

    scorers: tuple[str, ...] = ()
    injector: str | None = None
    models: tuple[str, ...] = ()
    token_file: Path | None = None
    tls_ca: Path | None = None
    device: str = "auto"
    registry: str | None = None

    @property
    def remote(self) -> bool:
        return bool(self.scorers)

    @property
    def model(self) -> str:
        """The model name to pass to the Scorer's calls: the served name, or "" (the bundle)."""
        return self.models[0] if self.remote and self.models else ""

    def auth(self) -> ClientAuth:
        from lenscal.security import client_auth

        return client_auth(self.token_file, self.tls_ca)

    def bundles(self) -> list[Path]:
        """The in-process bundles (each checked: a path, or a run ID the registry knows)."""
        if not self.models:
            raise LenscalError("give --model BUNDLE|RUN_ID (score in this process) or --scorer HOST:PORT")
        return [bundle_path(m, self.registry) for m in self.models]

    def open_scorer(self, **grpc_options: Any) -> Scorer:
        if self.remote:
            return open_scorer(endpoints=list(self.scorers), auth=self.auth(), **grpc_options)
        return open_scorer(model=self.bundles(), device=self.device)

    def open_injector(self) -> Injector:
        return open_injector(endpoint=self.injector, device=self.device, auth=self.auth())

    def where(self) -> str:
        return ", ".join(self.scorers) if self.remote else ", ".join(self.models)
