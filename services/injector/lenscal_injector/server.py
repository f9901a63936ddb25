"""`lenscal serve injector`: the injector as a gRPC server process."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from lenscal.injection.core import InjectorCore
from lenscal.logs import configure_logging
from lenscal.rpc.auth import BearerTokenInterceptor, read_token, server_credentials
from lenscal.rpc.server import (
    Admission,
    add_service,
    build_server,
    cap_malloc_arenas,
    mark_serving,
    run_until_signalled,
    start_metrics,
)
from lenscal_injector.servicer import SERVICE_NAME, InjectorServicer
from lenscal_pb.injector.v1 import injector_pb2

log = logging.getLogger("lenscal.injector")


def serve(
    port: int,
    host: str = "127.0.0.1",
    device: str = "auto",
    metrics_port: int = 0,
    max_requests: int = 8,
    data_roots: Sequence[str] = (),
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token_file: str | None = None,
) -> None:
    configure_logging(level=logging.INFO, json_lines=True)
    cap_malloc_arenas()
    core = InjectorCore(device=device, data_roots=list(data_roots))
    admission = Admission({"requests": max_requests})
    servicer = InjectorServicer(core, admission)

    def add(server: grpc.Server) -> list[str]:
        return [add_service(server, servicer, injector_pb2, "Injector")]

    server, health_servicer, bound = build_server(
        add,
        host=host,
        port=port,
        max_workers=admission.threads,
        interceptors=[BearerTokenInterceptor(read_token(token_file))] if token_file else [],
        credentials=server_credentials(tls_cert, tls_key),
    )
    start_metrics(metrics_port, host)
    server.start()
    core.warm_up()  # health says NOT_SERVING until the renderer has run once
    mark_serving(health_servicer, [SERVICE_NAME])
    roots = ", ".join(str(r) for r in core.data_roots or []) or "none (shard hosts refused)"
    log.info("injector serving on %s:%d (device %s; shard roots: %s)", host, bound, core.device, roots)
    print(f"lenscal injector listening on {host}:{bound} device={core.device}", flush=True)
    run_until_signalled(server, health_servicer, [SERVICE_NAME])
