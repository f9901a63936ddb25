"""`lenscal serve scorer`: one or K server processes on one port (SO_REUSEPORT), each with
its own engines on the shared device, health NOT_SERVING until warm, drain on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from lenscal.errors import LenscalError
from lenscal.models.bundle import read_meta
from lenscal.scorer.v1 import scorer_pb2_grpc
from lenscal.scoring.engines import make_engine
from lenscal.serving.server import build_server, mark_serving, run_until_signalled, start_metrics
from lenscal_scorer.servicer import SERVICE_NAME, BearerTokenInterceptor, ScorerServicer

log = logging.getLogger("lenscal.scorer")


@dataclass
class ScorerOptions:
    models: list[str]
    port: int = 50051
    host: str = "127.0.0.1"
    device: str = "cpu"
    engine: str = "torch"
    workers: int = 1
    max_batch_size: int = 512
    batch_wait_timeout_s: float = 0.005
    max_queue: int = 16384
    metrics_port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    token_file: str | None = None
    compile: bool = False
    threads: int = 16
    extra: dict[str, Any] = field(default_factory=dict)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (structured logs for collectors)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def model_names(paths: list[str]) -> dict[str, str]:
    """name -> bundle dir; a bundle's name is its registry run id, else its directory name."""
    names: dict[str, str] = {}
    for path in paths:
        meta = read_meta(path)
        name = str(meta.get("run_id") or Path(path).resolve().name)
        if name in names:
            raise LenscalError(f"two models are both named {name!r}: {names[name]} and {path}")
        names[name] = path
    return names


def serve(options: ScorerOptions) -> None:
    if not options.models:
        raise LenscalError("give at least one --model BUNDLE")
    model_names(options.models)  # fail fast, before any worker starts
    if options.workers == 1:
        _serve_one(options, 0)
        return
    if options.port == 0:
        raise LenscalError("--workers > 1 needs an explicit --port (all workers share it)")
    context = mp.get_context("spawn")  # gRPC objects must be created after the fork
    children = [
        context.Process(target=_serve_one, args=(options, i), daemon=False) for i in range(options.workers)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                signal_pid(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    if any(child.exitcode for child in children):
        sys.exit(1)


def signal_pid(pid: int, signum: int) -> None:
    import os

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _serve_one(options: ScorerOptions, index: int) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    names = model_names(options.models)
    engines = {
        name: make_engine(
            options.engine,
            path,
            options.device,
            **({"compile": options.compile} if options.engine == "torch" else {}),
        )
        for name, path in names.items()
    }
    servicer = ScorerServicer(
        engines,
        max_batch_size=options.max_batch_size,
        batch_wait_timeout_s=options.batch_wait_timeout_s,
        max_queue=options.max_queue,
    )

    def add(server: grpc.Server) -> list[str]:
        scorer_pb2_grpc.add_ScorerServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    interceptors = []
    if options.token_file:
        token = Path(options.token_file).read_text().strip()
        if not token:
            raise LenscalError(f"{options.token_file}: empty token file")
        interceptors.append(BearerTokenInterceptor(token))
    credentials = None
    if options.tls_cert or options.tls_key:
        if not (options.tls_cert and options.tls_key):
            raise LenscalError("TLS needs both --tls-cert and --tls-key")
        credentials = grpc.ssl_server_credentials(
            [(Path(options.tls_key).read_bytes(), Path(options.tls_cert).read_bytes())]
        )
    server, health_servicer, bound = build_server(
        add,
        host=options.host,
        port=options.port,
        max_workers=options.threads,
        reuse_port=options.workers > 1,
        interceptors=interceptors,
        credentials=credentials,
    )
    start_metrics(options.metrics_port + index if options.metrics_port else 0, options.host)
    server.start()
    servicer.warm_up()
    mark_serving(health_servicer, [SERVICE_NAME])
    print(
        f"lenscal scorer listening on {options.host}:{bound} worker={index} models={','.join(names)} "
        f"engine={options.engine} device={options.device}",
        flush=True,
    )
    run_until_signalled(server, health_servicer, [SERVICE_NAME], drain=servicer.drain)
