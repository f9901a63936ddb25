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
