"""The Scorer and Injector a flow works through: the configured services over gRPC, or, with
none configured, scorer and injector processes started for this run (`lenscal serve ...`,
the same code a container runs) and stopped after it, also when the run fails; they stop
themselves should this process be killed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from lenscal.backends import bundle_path, open_injector, open_scorer
from lenscal.injection.api import Injector
from lenscal.scoring.api import Scorer
from lenscal.security import ClientAuth, client_auth
from lenscal_flows.settings import FlowSettings


@dataclass(frozen=True)
class Endpoints:
    scorer: list[str]
    injector: str
    model: str  # the model's name on the scorer ("" = its default)
    token_file: str | None = None
    tls_ca: str | None = None
    local: tuple[str, ...] = ()  # services started here for the run: plain TCP, open

    def auth(self, service: str) -> ClientAuth:
        if service in self.local:
            return ClientAuth()
        return client_auth(self.token_file, self.tls_ca, environment=False)  # settings read env

    def scorer_client(self) -> Scorer:
        return open_scorer(endpoints=self.scorer, auth=self.auth("scorer"))

    def injector_client(self) -> Injector:
        return open_injector(endpoint=self.injector, auth=self.auth("injector"))


@contextlib.contextmanager
def service_endpoints(settings: FlowSettings, model: str | list[str] | None) -> Iterator[Endpoints]:
    """Endpoints of the configured services, or of local ones started for the block (the
    scorer then loads ``model``: bundle directories or training run IDs; the first is the
    default). With configured services ``model`` names a served model."""
    models = [model] if isinstance(model, str) else list(model or [])
    with contextlib.ExitStack() as stack:
        scorer = list(settings.scorer_endpoints)
        served_model = models[0] if scorer and models else ""
        if not scorer:
            from lenscal.rpc.launch import running_service

            bundles = [bundle_path(m) for m in models] or [bundle_path(settings.need("model", None))]
            args = [a for b in bundles for a in ("--model", str(b))]
            address, _ = stack.enter_context(
                running_service("scorer", *args, "--device", settings.device, timeout_s=300)
            )
            scorer = [address]
        injector = settings.injector_endpoint
        if not injector:
            from lenscal.rpc.launch import running_service

            injector, _ = stack.enter_context(
                running_service("injector", "--device", settings.device, timeout_s=300)
            )
        configured = {"scorer": settings.scorer_endpoints, "injector": settings.injector_endpoint}
        local = tuple(name for name, given in configured.items() if not given)
        yield Endpoints(scorer, injector, served_model, settings.token_file, settings.tls_ca, local)


@contextlib.contextmanager
def clients(endpoints: Endpoints) -> Iterator[tuple[Scorer, Injector]]:
    with endpoints.scorer_client() as scorer, endpoints.injector_client() as injector:
        # Configured services may be (re)starting (a compose stack, a rolling restart): a flow
        # waits for them as long as for their health, and its task retries do the rest.
        scorer.wait_ready(timeout_s=300, connect_timeout_s=300)
        injector.wait_ready(timeout_s=300, connect_timeout_s=300)
        yield scorer, injector
