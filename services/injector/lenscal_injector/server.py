"""`lenscal serve injector`: the injector as a gRPC server process."""

from __future__ import annotations

import logging

from lenscal.injector.v1 import injector_pb2_grpc
from lenscal.serving.server import build_server, mark_serving, run_until_signalled, start_metrics
from lenscal_injector.servicer import SERVICE_NAME, InjectorServicer

log = logging.getLogger("lenscal.injector")


def serve(
    port: int, host: str = "127.0.0.1", device: str = "cpu", metrics_port: int = 0, max_workers: int = 8
) -> None:
    servicer = InjectorServicer(device=device)

    def add(server: object) -> list[str]:
        injector_pb2_grpc.add_InjectorServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    server, health_servicer, bound = build_server(add, host=host, port=port, max_workers=max_workers)
    start_metrics(metrics_port, host)
    server.start()
    servicer.warm_up()  # health says NOT_SERVING until the renderer has run once
    mark_serving(health_servicer, [SERVICE_NAME])
    log.info("injector serving on %s:%d (device %s)", host, bound, device)
    print(f"lenscal injector listening on {host}:{bound} device={device}", flush=True)
    run_until_signalled(server, health_servicer, [SERVICE_NAME])
