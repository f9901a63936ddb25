"""`lenscal serve scorer`: one or K server processes on one port (SO_REUSEPORT), each with
its own engines on the shared device, health NOT_SERVING until warm, drain on SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from lenscal.errors import LenscalError
from lenscal.rpc.server import Admission
from lenscal.rpc.service import ServerOptions, prepare_process, run_service
from lenscal.scoring.local import load_core, model_names
from lenscal_scorer.servicer import ScorerServicer, observe_batch

log = logging.getLogger("lenscal.scorer")


@dataclass
class ScorerOptions:
    models: list[str]
    port: int = 50051
    host: str = "127.0.0.1"
    device: str = "auto"
    engine: str = "auto"
    workers: int = 1
    max_batch_size: int = 512
    batch_wait_timeout_s: float = 0.005
    max_queue: int = 16384
    metrics_port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    token_file: str | None = None
    compile: bool = False
    max_unary: int = 64
    max_streams: int = 16
    stream_idle_timeout_s: float = 60.0


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
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    if any(child.exitcode for child in children):
        sys.exit(1)


def _serve_one(options: ScorerOptions, index: int) -> None:
    prepare_process()
    core = load_core(
        options.models,
        engine=options.engine,
        device=options.device,
        compile=options.compile,
        max_batch_size=options.max_batch_size,
        batch_wait_timeout_s=options.batch_wait_timeout_s,
        max_queue=options.max_queue,
        on_batch=observe_batch,
    )
    admission = Admission({"unary": options.max_unary, "streams": options.max_streams}, retry_after_s=0.5)
    servicer = ScorerServicer(core, admission, stream_idle_timeout_s=options.stream_idle_timeout_s)

    def warm_up() -> str:
        core.warm_up()
        infos = core.model_info()
        for info in infos:
            log.info("model %s warm (%s on %s)", info.name, info.engine, info.device)
        devices = ",".join(sorted({i.device for i in infos}))
        engines = ",".join(sorted({i.engine for i in infos}))
        return f"worker={index} models={','.join(core.engines)} engine={engines} device={devices}"

    server = ServerOptions(
        host=options.host,
        port=options.port,
        metrics_port=options.metrics_port + index if options.metrics_port else 0,
        tls_cert=options.tls_cert,
        tls_key=options.tls_key,
        token_file=options.token_file,
        reuse_port=options.workers > 1,
    )
    run_service("scorer", servicer, admission, server, warm_up=warm_up, drain=servicer.drain)
