"""Server plumbing shared by the services: message limits, health, reflection, metrics
endpoint, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lenscal.errors import OverloadedError

log = logging.getLogger("lenscal.rpc")

#: 64 MiB: ~1,500 float32 cutouts; clients send 2-4 MB messages, this is the hard ceiling.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def build_server(
    add_servicers: Callable[[grpc.Server], Sequence[str]],
    *,
    host: str,
    port: int,
    max_workers: int = 8,
    max_concurrent_rpcs: int | None = None,
    reuse_port: bool = False,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, health.HealthServicer, int]:
    """A sync gRPC server with health (NOT_SERVING until ``mark_serving``) and reflection.
    Returns (server, health servicer, bound port)."""
    options = [*CHANNEL_OPTIONS, ("grpc.so_reuseport", 1 if reuse_port else 0)]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=options,
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        interceptors=list(interceptors),
    )
    names = list(add_servicers(server))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    return server, health_servicer, bound


def mark_serving(health_servicer: health.HealthServicer, names: Sequence[str], serving: bool = True) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *names]:
        health_servicer.set(name, status)


def run_until_signalled(
    server: grpc.Server,
    health_servicer: health.HealthServicer,
    names: Sequence[str],
    grace_s: float = 30.0,
    drain: Callable[[float], None] | None = None,
) -> None:
    """Block until SIGTERM/SIGINT, then report NOT_SERVING, let ``drain`` refuse new work
    (UNAVAILABLE, which clients retry elsewhere) and wait for accepted work, then stop the
    server. Without the drain step gRPC would cancel calls that arrive during shutdown."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: draining", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    _watch_parent(stop)
    stop.wait()
    mark_serving(health_servicer, names, serving=False)
    if drain is not None:
        drain(grace_s)
    server.stop(grace_s).wait()


#: Set by lenscal.rpc.launch: the pid of the process that started this service.
PARENT_ENV = "LENSCAL_EXIT_WITH_PID"


def _watch_parent(stop: threading.Event, period_s: float = 1.0) -> None:
    """With $LENSCAL_EXIT_WITH_PID set, drain and stop once that process no longer exists."""
    pid = int(os.environ.get(PARENT_ENV, "0") or 0)
    if pid <= 0:
        return

    def watch() -> None:
        while not stop.wait(period_s):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.info("process %d that started this service is gone: draining", pid)
                stop.set()
            except PermissionError:
                pass  # alive, owned by another user

    threading.Thread(target=watch, name="lenscal-parent-watch", daemon=True).start()


def cap_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (it makes up to 8 per core, one per busy thread): a server
    with dozens of handler threads otherwise fragments memory and its RSS creeps up after
    every burst of cancelled work. No-op where libc is not glibc."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX


def start_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Prometheus text exposition on http://host:port/metrics (port 0 disables)."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host)


class Admission:
    """Bounded concurrency per kind of call, answered at once: a call over its kind's limit
    gets RESOURCE_EXHAUSTED (with a retry hint) instead of waiting for a thread, so slow or
    idle clients of one kind can never take the threads health checks and other calls need."""

    def __init__(self, limits: dict[str, int], retry_after_s: float = 0.5) -> None:
        self.limits = dict(limits)
        self.active = dict.fromkeys(limits, 0)
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def enter(self, kind: str) -> Iterator[None]:
        with self._lock:
            if self.active[kind] >= self.limits[kind]:
                raise OverloadedError(
                    f"{self.limits[kind]} {kind} calls already running (the server's --max-{kind} limit); "
                    "retry later or on another replica",
                    retry_after_s=self.retry_after_s,
                )
            self.active[kind] += 1
        try:
            yield
        finally:
            with self._lock:
                self.active[kind] -= 1

    @property
    def threads(self) -> int:
        """Handler threads that guarantee a free one for health checks and refusals."""
        return sum(self.limits.values()) + HEALTH_RESERVE_THREADS


#: Threads beyond the admitted calls: health checks, reflection, quick refusals.
HEALTH_RESERVE_THREADS = 4
#: Largest reply a service computes: the message limit less room for the other fields.
MAX_REPLY_BYTES = MAX_MESSAGE_BYTES - (1 << 20)
