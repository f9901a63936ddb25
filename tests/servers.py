"""Real lenscal service processes for tests (lenscal.rpc.launch) and test certificates."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lenscal.rpc.launch import Service, running_service

__all__ = ["Service", "make_certificate", "running_service"]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed (key, certificate) for 127.0.0.1 and localhost, made with openssl."""
    import shutil

    import pytest

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert
