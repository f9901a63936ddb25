"""The exception hierarchy. Every error lenscal raises on bad input derives from LenscalError,
so the CLI (and, later, the gRPC status mapping) handle them in one place."""


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
