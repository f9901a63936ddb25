"""Wait for a service's grpc.health.v1 check to say SERVING (shared by every client)."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def wait_serving(channel: grpc.Channel, endpoint: str, deadline: float, what: str = "service") -> None:
    """Poll until SERVING; ``deadline`` is a time.monotonic() value."""
    health = health_pb2_grpc.HealthStub(channel)
    while True:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass  # not up yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} at {endpoint} not SERVING in time")
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
