"""The service kit: the table of lenscal's gRPC services and the one start-up routine they
share. A new service is its proto, a core in the library, a codec and a servicer (each
RPC a few lines over the core), a ``serve`` calling ``run_service``, its row in
``SERVICES``, its entry point in pyproject.toml and its compose service; the tests check
pyproject, compose and the architecture test against the table.

``run_service`` does, in order: the server (message limits, admission threads, TLS,
bearer token, SO_REUSEPORT for worker processes), health (NOT_SERVING until warm) and
reflection, the metrics endpoint, start, warm-up, SERVING, the one "listening on" line
(what launchers and tests wait for), then block until SIGTERM/SIGINT and drain."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from lenscal.logs import configure_logging
from lenscal.rpc.auth import BearerTokenInterceptor, read_token, server_credentials
from lenscal.rpc.heap import HeapTrimmer, cap_malloc_arenas
from lenscal.rpc.server import (
    Admission,
    add_service,
    build_server,
    mark_serving,
    run_until_signalled,
    start_metrics,
)


@dataclass(frozen=True)
class ServiceSpec:
    """One gRPC service: ``lenscal serve <name>``, compose service ``<name>``."""

    name: str
    proto: str  # the proto package's file, under proto/
    pb2: str  # its generated module
    service: str  # the service in the proto
    package: str  # the package outside the library that serves it
    entry_point: str  # `lenscal serve <name>` (pyproject.toml, group lenscal.serve)
    port: int  # default port


#: Every lenscal gRPC service.
SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            name="scorer",
            proto="lenscal/scorer/v1/scorer.proto",
            pb2="lenscal_pb.scorer.v1.scorer_pb2",
            service="Scorer",
            package="lenscal_scorer",
            entry_point="lenscal_scorer.cli:serve_scorer",
            port=50051,
        ),
        ServiceSpec(
            name="injector",
            proto="lenscal/injector/v1/injector.proto",
            pb2="lenscal_pb.injector.v1.injector_pb2",
            service="Injector",
            package="lenscal_injector",
            entry_point="lenscal_injector.cli:serve_injector",
            port=50052,
        ),
    )
}


@dataclass(frozen=True)
class ServerOptions:
    """Where and how a service listens (the `lenscal serve` options every service shares)."""

    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    token_file: str | None = None
    reuse_port: bool = False  # several worker processes on one port


def prepare_process() -> None:
    """A service process's logging (JSON lines) and malloc policy, before its core loads."""
    configure_logging(level=logging.INFO, json_lines=True)
    cap_malloc_arenas()


def run_service(
    name: str,
    servicer: Any,
    admission: Admission,
    options: ServerOptions,
    *,
    warm_up: Callable[[], str],
    drain: Callable[[float], None] | None = None,
) -> None:
    """Serve ``servicer`` as service ``name`` of ``SERVICES`` until signalled (see the module
    docstring). ``warm_up`` readies the core and returns what the listening line adds."""
    spec = SERVICES[name]
    pb2 = importlib.import_module(spec.pb2)
    # Memory a burst of calls freed goes back to the system once the server is idle again.
    admission.on_idle = HeapTrimmer(lambda: admission.idle).soon
    interceptors = [BearerTokenInterceptor(read_token(options.token_file))] if options.token_file else []

    def add(server: grpc.Server) -> list[str]:
        return [add_service(server, servicer, pb2, spec.service)]

    server, health_servicer, bound = build_server(
        add,
        host=options.host,
        port=options.port,
        max_workers=admission.threads,
        reuse_port=options.reuse_port,
        interceptors=interceptors,
        credentials=server_credentials(options.tls_cert, options.tls_key),
    )
    service_name = str(pb2.DESCRIPTOR.services_by_name[spec.service].full_name)
    start_metrics(options.metrics_port, options.host)
    server.start()
    detail = warm_up()  # health says NOT_SERVING until the core has run once
    mark_serving(health_servicer, [service_name])
    print(f"lenscal {name} listening on {options.host}:{bound} {detail}".rstrip(), flush=True)
    run_until_signalled(server, health_servicer, [service_name], drain=drain)
