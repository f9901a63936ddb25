"""Server plumbing shared by the services: message limits, health, reflection, metrics
endpoint, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lenscal.errors import OverloadedError
from lenscal.lifeline import parent_from_env, watch_exit
from lenscal.rpc.status import tolerant_parser

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


def add_service(server: grpc.Server, servicer: Any, pb2_module: Any, service: str) -> str:
    """Register ``servicer``'s methods for ``service`` of ``pb2_module`` (what the generated
    ``add_*Servicer_to_server`` does), parsing requests with lenscal.rpc.status's
    ``tolerant_parser``; returns the service's full name."""
    descriptor = pb2_module.DESCRIPTOR.services_by_name[service]
    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    handlers = {
        method.name: kinds[(method.client_streaming, method.server_streaming)](
            getattr(servicer, method.name),
            request_deserializer=tolerant_parser(getattr(pb2_module, method.input_type.name)),
            response_serializer=getattr(pb2_module, method.output_type.name).SerializeToString,
        )
        for method in descriptor.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
    server.add_registered_method_handlers(descriptor.full_name, handlers)
    return str(descriptor.full_name)


#: Longer than any real deadline: a call without one (grpcurl's default) reports ~1e9 s left,
#: which no wait accepts (OverflowError), so it is treated as no deadline.
NO_DEADLINE_S = 1e6


def seconds_left(context: grpc.ServicerContext) -> float | None:
    """Seconds until the call's deadline; None when it has none."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > NO_DEADLINE_S else float(remaining)


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
    """Block until SIGTERM/SIGINT (or the death of the process that started this service, see
    lenscal.lifeline), then report NOT_SERVING, let ``drain`` refuse new work (UNAVAILABLE,
    which clients retry elsewhere) and wait for accepted work, then stop the server. Without
    the drain step gRPC would cancel calls that arrive during shutdown. Orphaned, nobody waits
    for replies: the grace is ORPHAN_GRACE_S."""
    stop = threading.Event()
    orphaned = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: draining", signum)
        stop.set()

    def _on_parent_exit() -> None:
        log.info("the process that started this service is gone: stopping")
        orphaned.set()
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    parent = parent_from_env()
    if parent is not None:
        watch_exit(parent, _on_parent_exit)
    # A timed wait, not stop.wait(): a signal the kernel delivers to one of gRPC's threads only
    # runs its Python handler when the main thread next runs bytecode, which an untimed wait
    # never does (SIGTERM was ignored for minutes).
    while not stop.wait(SIGNAL_POLL_S):
        pass
    grace = min(grace_s, ORPHAN_GRACE_S) if orphaned.is_set() else grace_s
    mark_serving(health_servicer, names, serving=False)
    if drain is not None:
        drain(grace)
    server.stop(grace).wait()


#: How often the main thread wakes to run signal handlers, s.
SIGNAL_POLL_S = 0.2
#: Grace of a service whose starter died (its replies have no reader), s.
ORPHAN_GRACE_S = 1.0


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
        #: Called (outside the lock) each time the last call in flight leaves; run_service
        #: sets it to trim the heap (lenscal.rpc.heap.HeapTrimmer).
        self.on_idle: Callable[[], object] | None = None

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
                idle = not any(self.active.values())
            if idle and self.on_idle is not None:
                self.on_idle()

    @property
    def idle(self) -> bool:
        """No admitted call in flight."""
        with self._lock:
            return not any(self.active.values())

    @property
    def threads(self) -> int:
        """Handler threads that guarantee a free one for health checks and refusals."""
        return sum(self.limits.values()) + HEALTH_RESERVE_THREADS


#: Threads beyond the admitted calls: health checks, reflection, quick refusals.
HEALTH_RESERVE_THREADS = 4
#: Largest reply a service computes: the message limit less room for the other fields.
MAX_REPLY_BYTES = MAX_MESSAGE_BYTES - (1 << 20)
