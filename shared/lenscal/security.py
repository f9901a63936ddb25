"""What a client needs to reach a secured service: a bearer token and the CA certificate that
signed the server's TLS certificate, read from files named on the command line
(``--token-file``, ``--tls-ca``) or, for flows and containers, by ``LENSCAL_TOKEN_FILE`` and
``LENSCAL_TLS_CA``. Reading them is plain file work (no gRPC), so every command and flow
resolves them the same way and a missing or malformed file is one line naming it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lenscal.errors import LenscalError

TOKEN_ENV = "LENSCAL_TOKEN_FILE"
TLS_CA_ENV = "LENSCAL_TLS_CA"
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class ClientAuth:
    token: str | None = None
    root_certificates: bytes | None = None  # PEM; None: plain TCP


def read_secret_file(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of a credential file; one line naming it when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LenscalError(f"{what} {path}: cannot read it ({exc.strerror})") from None


def read_token(path: str | os.PathLike[str]) -> str:
    token = read_secret_file(path, "token file").decode("utf-8", "replace").strip()
    if not token:
        raise LenscalError(f"token file {path}: empty")
    return token


def read_ca(path: str | os.PathLike[str]) -> bytes:
    data = read_secret_file(path, "TLS CA file")
    if PEM_CERTIFICATE not in data:
        raise LenscalError(f"TLS CA file {path}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)")
    return data


def client_auth(
    token_file: str | os.PathLike[str] | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    *,
    environment: bool = True,
) -> ClientAuth:
    """The token and CA from the given files, else (``environment``) from $LENSCAL_TOKEN_FILE
    and $LENSCAL_TLS_CA."""
    if environment:
        token_file = token_file or os.environ.get(TOKEN_ENV) or None
        tls_ca = tls_ca or os.environ.get(TLS_CA_ENV) or None
    return ClientAuth(
        token=read_token(token_file) if token_file else None,
        root_certificates=read_ca(tls_ca) if tls_ca else None,
    )
