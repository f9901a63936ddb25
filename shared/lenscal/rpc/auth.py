"""Transport security shared by every lenscal service and client: TLS credentials from PEM
files and bearer-token authentication (``authorization: Bearer <token>`` metadata)."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import grpc

from lenscal.errors import LenscalError, UnauthenticatedError
from lenscal.rpc.status import status_for
from lenscal.security import read_secret_file, read_token

__all__ = ["BearerTokenInterceptor", "read_token", "server_credentials", "token_metadata"]

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def server_credentials(cert: str | Path | None, key: str | Path | None) -> grpc.ServerCredentials | None:
    """TLS from a PEM certificate chain and key; None (plain TCP) when neither is given."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise LenscalError("TLS needs both --tls-cert and --tls-key")
    pair = (read_secret_file(key, "--tls-key"), read_secret_file(cert, "--tls-cert"))
    return grpc.ssl_server_credentials([pair])


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Every RPC but health checks needs ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            error = UnauthenticatedError("missing or wrong bearer token (metadata 'authorization')")
            context.abort(status_for(error), str(error))

        self._deny = {
            (False, False): grpc.unary_unary_rpc_method_handler(deny),
            (False, True): grpc.unary_stream_rpc_method_handler(deny),
            (True, False): grpc.stream_unary_rpc_method_handler(lambda _r, ctx: deny(None, ctx)),
            (True, True): grpc.stream_stream_rpc_method_handler(lambda _r, ctx: deny(None, ctx)),
        }

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith(HEALTH_PREFIX):
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self.expected):  # constant time: no timing oracle
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: UNIMPLEMENTED, as without the interceptor
        return self._deny[(handler.request_streaming, handler.response_streaming)]
