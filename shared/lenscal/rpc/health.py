"""Wait for a service's grpc.health.v1 check to say SERVING (shared by every client)."""

from __future__ import annotations

import os
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lenscal.errors import NotReadyError, UnreachableError

#: Seconds a client waits for a connection before it calls the endpoint unreachable
#: ($LENSCAL_CONNECT_TIMEOUT_S). A service that is up but warming its models is connected and
#: says NOT_SERVING: that wait is the caller's longer deadline.
CONNECT_TIMEOUT_S = 10.0


def connect_timeout_s() -> float:
    try:
        return float(os.environ.get("LENSCAL_CONNECT_TIMEOUT_S", CONNECT_TIMEOUT_S))
    except ValueError:
        return CONNECT_TIMEOUT_S


def wait_serving(
    channel: grpc.Channel,
    endpoint: str,
    deadline: float,
    what: str = "service",
    connect_within_s: float | None = None,
) -> None:
    """Connect within ``connect_within_s`` (default: the connect timeout; else
    UnreachableError, one line), then poll health until SERVING by ``deadline`` (a
    time.monotonic() value; else NotReadyError). Callers that start the service themselves,
    or wait for one being restarted, give a longer connect wait."""
    within = connect_timeout_s() if connect_within_s is None else connect_within_s
    limit = max(0.0, min(deadline - time.monotonic(), within))
    try:
        grpc.channel_ready_future(channel).result(timeout=limit)
    except grpc.FutureTimeoutError:
        raise UnreachableError(
            f"{what} at {endpoint}: no connection within {limit:g} s (is it running there? a TLS "
            "server needs --tls-ca / LENSCAL_TLS_CA, a plain one none)"
        ) from None
    health = health_pb2_grpc.HealthStub(channel)
    while True:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass  # not up yet
        if time.monotonic() > deadline:
            raise NotReadyError(f"{what} at {endpoint}: connected, but not SERVING in time (warming up?)")
        time.sleep(0.2)


def probe(endpoint: str, timeout_s: float = 3.0) -> bool:
    """One grpc.health.v1 check: True when the service at ``endpoint`` says SERVING."""
    with grpc.insecure_channel(endpoint) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


if __name__ == "__main__":
    # Container health checks: `python -m lenscal.rpc.health [host:port]`, exit 0 when SERVING.
    import sys

    sys.exit(0 if probe(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051") else 1)
