"""Validation-error messages: every typed config, spec or request built from user input is
validated by pydantic, and every failure is reported the same way, naming the key:
``<source>: <a.b>: <problem>; <c>: <problem>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lenscal.errors import LenscalError, RequestError

M = TypeVar("M", bound=BaseModel)


def describe(exc: ValidationError, prefix: str = "") -> str:
    """``key.path: message`` for each problem, joined by '; '. ``prefix`` is put before each
    key (``options.`` for a request field); a problem of the whole object is named by the
    prefix alone, or by the model's title."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        name = f"{prefix}{key}" if key else (prefix.rstrip(".") or exc.title)
        parts.append(f"{name}: {error['msg']}")
    return "; ".join(parts)


def request_error(exc: ValidationError, prefix: str) -> RequestError:
    """A RequestError for a request part (``prefix``, e.g. ``options.``) that failed validation;
    its field is the first bad key."""
    first = ".".join(str(p) for p in exc.errors()[0]["loc"])
    return RequestError(
        f"{prefix}{first}" if first else prefix.rstrip("."), "", message=describe(exc, prefix)
    )


def validated(
    model: type[M],
    data: Mapping[str, Any] | Any,
    *,
    error: type[LenscalError] = LenscalError,
    source: str | None = None,
    prefix: str = "",
) -> M:
    """``model.model_validate(data)``, with a ValidationError turned into ``error`` whose
    message starts with ``source`` (a file or request name) and names each bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = describe(exc, prefix)
        raise error(f"{source}: {problems}" if source else problems) from None
