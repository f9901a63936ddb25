"""Exceptions -> gRPC status codes, in one place. Servicers raise plain lenscal errors;
``rpc_errors`` turns them into ``context.abort(code, message)``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from lenscal.errors import LenscalError

log = logging.getLogger("lenscal.serving")


class RequestError(LenscalError):
    """A request field is missing, malformed or inconsistent; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFoundError(LenscalError):
    """A named thing (model, prior, shard directory) does not exist."""


class OverloadedError(LenscalError):
    """The server's queue is full; the client should back off and retry."""

    def __init__(self, message: str, retry_after_s: float = 0.5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReadyError(LenscalError):
    """The server is warming up or draining."""


class UnauthenticatedError(LenscalError):
    """The call carries no valid credentials."""


#: First match wins: specific classes before their bases.
STATUS_FOR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotReadyError, grpc.StatusCode.UNAVAILABLE),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (LenscalError, grpc.StatusCode.INVALID_ARGUMENT),  # every other user-fixable problem
)

F = TypeVar("F", bound=Callable[..., Any])


def status_for(exc: BaseException) -> grpc.StatusCode:
    return next((code for cls, code in STATUS_FOR if isinstance(exc, cls)), grpc.StatusCode.INTERNAL)


def rpc_errors(method: F) -> F:
    """Wrap a sync unary servicer method: mapped errors abort with their code; anything
    unexpected is logged and answered INTERNAL, and the server keeps serving."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def rpc_stream_errors(method: F) -> F:
    """Like rpc_errors, for server-streaming methods (generators)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def _abort(context: grpc.ServicerContext, exc: Exception, name: str) -> None:
    if isinstance(exc, grpc.RpcError) and hasattr(context, "code") and context.code() is not None:
        raise exc  # already aborted
    code = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unexpected error in %s", name)
        message = f"internal error in {name}: {type(exc).__name__}: {exc}"
    else:
        message = str(exc)
    if isinstance(exc, OverloadedError):
        context.set_trailing_metadata((("retry-after-s", f"{exc.retry_after_s:.3f}"),))
    context.abort(code, message)
