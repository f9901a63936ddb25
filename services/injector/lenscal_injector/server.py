"""`lenscal serve injector`: the injector as a gRPC server process."""

from __future__ import annotations

import logging

import grpc

from lenscal.injection.core import InjectorCore
from lenscal.logs import configure_logging
from lenscal.rpc.server import build_server, mark_serving, run_until_signalled, start_metrics
from lenscal_injector.servicer import SERVICE_NAME, InjectorServicer
from lenscal_pb.injector.v1 import injector_pb2_grpc

log = logging.getLogger("lenscal.injector")


def serve(
    port: int, host: str = "127.0.0.1", device: str = "auto", metrics_port: int = 0, max_workers: int = 8
) -> None:
    configure_logging(level=logging.INFO, json_lines=True)
    core = InjectorCore(device=device)
    servicer = InjectorServicer(core)

    def add(server: grpc.Server) -> list[str]:
        injector_pb2_grpc.add_InjectorServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    server, health_servicer, bound = build_server(add, host=host, port=port, max_workers=max_workers)
    start_metrics(metrics_port, host)
    server.start()
    core.warm_up()  # health says NOT_SERVING until the renderer has run once
    mark_serving(health_servicer, [SERVICE_NAME])
    log.info("injector serving on %s:%d (device %s)", host, bound, core.device)
    print(f"lenscal injector listening on {host}:{bound} device={core.device}", flush=True)
    run_until_signalled(server, health_servicer, [SERVICE_NAME])
