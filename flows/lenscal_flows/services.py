"""The Scorer and Injector a flow works through: the configured services over gRPC, or, with
none configured, scorer and injector processes started for this run (`lenscal serve ...`,
the same code a container runs) and stopped after it, also when the run fails; they stop
themselves should this process be killed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lenscal.backends import bundle_path, open_injector, open_scorer
from lenscal.injection.api import Injector
from lenscal.rpc.auth import read_token
from lenscal.scoring.api import Scorer
from lenscal_flows.settings import FlowSettings


@dataclass(frozen=True)
class Endpoints:
    scorer: list[str]
    injector: str
    model: str  # the model's name on the scorer ("" = its default)
    token_file: str | None = None

    def scorer_client(self) -> Scorer:
        token = read_token(Path(self.token_file)) if self.token_file else None
        return open_scorer(endpoints=self.scorer, token=token)

    def injector_client(self) -> Injector:
        token = read_token(Path(self.token_file)) if self.token_file else None
        return open_injector(endpoint=self.injector, token=token)


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
        yield Endpoints(scorer, injector, served_model, settings.token_file)


@contextlib.contextmanager
def clients(endpoints: Endpoints) -> Iterator[tuple[Scorer, Injector]]:
    with endpoints.scorer_client() as scorer, endpoints.injector_client() as injector:
        scorer.wait_ready(timeout_s=300)
        injector.wait_ready(timeout_s=300)
        yield scorer, injector
