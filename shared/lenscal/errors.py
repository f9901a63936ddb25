"""The exception hierarchy. Every error lenscal raises on bad input derives from LenscalError,
so the CLI (one line, exit 2) and the gRPC layer (one status table, lenscal.rpc.status)
handle them in one place. Nothing here knows about a transport."""


class LenscalError(Exception):
    """Base class: a problem the user can fix, stated in the message."""


class CutoutError(LenscalError):
    """A cutout file is unreadable, truncated, or has the wrong shape or bands."""


class ManifestError(LenscalError):
    """A manifest column is missing or holds a bad value."""


class ShardError(LenscalError):
    """A shard directory is incomplete, corrupted, or incompatible with the request."""


class SplitError(LenscalError):
    """A split scheme, seed, or sky position is invalid."""


class PreprocessError(LenscalError):
    """A PreprocessSpec or the batch given to preprocess() is invalid."""


class RequestError(LenscalError):
    """A request field is missing, malformed or inconsistent; the message names the field."""

    def __init__(self, field: str, problem: str, *, message: str | None = None) -> None:
        super().__init__(message or f"{field}: {problem}")
        self.field = field


class NotFoundError(LenscalError):
    """A named thing (model, prior, shard directory) does not exist."""


class OverloadedError(LenscalError):
    """The queue is full; the caller should back off ``retry_after_s`` seconds and retry."""

    def __init__(self, message: str, retry_after_s: float = 0.5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReadyError(LenscalError):
    """The service is warming up or draining; retry later or elsewhere."""


class UnreachableError(LenscalError):
    """No connection to a service within the connect deadline (nothing listening, a wrong
    address, a firewall, or TLS on one side only)."""


class UnauthenticatedError(LenscalError):
    """The call carries no valid credentials."""


class RemoteError(LenscalError):
    """A service failed in a way the caller cannot fix (its message says how)."""
