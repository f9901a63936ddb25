"""Exceptions -> gRPC status codes, in one place. Servicers raise plain lenscal errors
(lenscal.errors); ``rpc_errors`` turns them into ``context.abort(code, message)``. Clients
use ``RETRYABLE`` to decide what another attempt (or replica) may fix."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from lenscal.errors import (
    LenscalError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    RemoteError,
    RequestError,
    UnauthenticatedError,
)

log = logging.getLogger("lenscal.rpc")

#: First match wins: specific classes before their bases.
STATUS_FOR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (concurrent.futures.CancelledError, grpc.StatusCode.CANCELLED),  # the caller left
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotReadyError, grpc.StatusCode.UNAVAILABLE),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (LenscalError, grpc.StatusCode.INVALID_ARGUMENT),  # every other user-fixable problem
)
#: Codes a client retries (with backoff, on another replica when it has one). CANCELLED is
#: among them for idempotent calls: a client that did not cancel sees it only when a server
#: went away mid-call.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
)
#: Trailing-metadata key carrying a RESOURCE_EXHAUSTED back-off hint, seconds.
RETRY_AFTER_KEY = "retry-after-s"

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def as_lenscal_errors() -> Iterator[None]:
    """Client side: a failed call raises error_from_rpc(...) instead of grpc.RpcError."""
    try:
        yield
    except grpc.RpcError as error:
        raise error_from_rpc(error) from None


def error_from_rpc(error: grpc.RpcError) -> Exception:
    """The lenscal error a failed call stands for, so callers of the gRPC clients catch the
    same exceptions as callers of the in-process implementations."""
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, sep, problem = details.partition(": ")
        return RequestError(field, problem) if sep else LenscalError(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        hint = dict(error.trailing_metadata() or ()).get(RETRY_AFTER_KEY)
        return OverloadedError(details, float(hint) if hint else 0.5)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(details)
    if code == grpc.StatusCode.CANCELLED:  # not by this client: the server went away mid-call
        return NotReadyError(f"the service went away during the call ({details}); retry")
    for cls, mapped in STATUS_FOR:
        if mapped == code and issubclass(cls, LenscalError):
            return cls(details)
    return RemoteError(f"{code.name if code else 'error'}: {details}")


def status_for(exc: BaseException) -> grpc.StatusCode:
    return next((code for cls, code in STATUS_FOR if isinstance(exc, cls)), grpc.StatusCode.INTERNAL)


def abort_with(context: grpc.ServicerContext, exc: BaseException, where: str = "") -> None:
    """End the call with the status ``exc`` maps to (never returns)."""
    code = status_for(exc)
    message = str(exc)
    if code == grpc.StatusCode.INTERNAL:
        message = f"internal error{' in ' + where if where else ''}: {type(exc).__name__}: {exc}"
    if isinstance(exc, OverloadedError):
        context.set_trailing_metadata(((RETRY_AFTER_KEY, f"{exc.retry_after_s:.3f}"),))
    context.abort(code, message)


class Undecodable:
    """A request message protobuf could not parse. lenscal.rpc.server.add_service parses
    requests with ``tolerant_parser``, which hands this to the servicer instead of raising:
    raised in gRPC's own deserializer, every bad message cost an ERROR line with a traceback
    and memory grpcio never returned. ``rpc_errors`` answers it INVALID_ARGUMENT."""

    __slots__ = ("problem", "type_name")

    def __init__(self, type_name: str, problem: str) -> None:
        self.type_name, self.problem = type_name, problem

    def error(self) -> RequestError:
        return RequestError("message", f"not a valid {self.type_name} ({self.problem})")


def tolerant_parser(message_class: Any) -> Callable[[bytes], Any]:
    from google.protobuf.message import DecodeError

    name = message_class.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return Undecodable(name, str(exc).rpartition(": ")[2] or "corrupt wire format")

    return parse


def _refuse_undecodable(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, Undecodable):
            raise request.error()
        yield request


def rpc_errors(method: F) -> F:
    """Wrap a sync unary servicer method: mapped errors abort with their code; anything
    unexpected is logged and answered INTERNAL, and the server keeps serving."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise request.error()
            return method(self, request, context)
        except Exception as exc:
            _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def rpc_stream_errors(method: F) -> F:
    """Like rpc_errors, for server-streaming methods (generators); a request stream is read
    through a check that ends the call at its first undecodable message."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            if isinstance(request, Undecodable):
                raise request.error()
            if not hasattr(request, "DESCRIPTOR"):  # a request stream
                request = _refuse_undecodable(request)
            yield from method(self, request, context)
        except Exception as exc:
            _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def _abort(context: grpc.ServicerContext, exc: Exception, name: str) -> None:
    if isinstance(exc, grpc.RpcError) and hasattr(context, "code") and context.code() is not None:
        raise exc  # already aborted
    code = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unexpected error in %s", name)  # the JSON log keeps the traceback
    elif code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
        log.debug("%s ended: %s", name, code.name)  # the caller's choice, not an error
    abort_with(context, exc, name)
