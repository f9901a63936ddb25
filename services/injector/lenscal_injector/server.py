"""`lenscal serve injector`: the injector as a gRPC server process."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lenscal.injection.core import InjectorCore
from lenscal.rpc.server import Admission
from lenscal.rpc.service import ServerOptions, prepare_process, run_service
from lenscal_injector.servicer import InjectorServicer

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
    prepare_process()
    core = InjectorCore(device=device, data_roots=list(data_roots))
    admission = Admission({"requests": max_requests})

    def warm_up() -> str:
        core.warm_up()
        roots = ", ".join(str(r) for r in core.data_roots or []) or "none (shard hosts refused)"
        log.info("injector warm (device %s; shard roots: %s)", core.device, roots)
        return f"device={core.device}"

    options = ServerOptions(
        host=host,
        port=port,
        metrics_port=metrics_port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        token_file=token_file,
    )
    run_service("injector", InjectorServicer(core, admission), admission, options, warm_up=warm_up)
