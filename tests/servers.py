"""Start real lenscal service processes on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Service(subprocess.Popen[str]):
    """A service process whose output is read continuously (so a chatty server never blocks
    on a full pipe) and kept in ``lines``."""

    lines: list[str]


@contextmanager
def running_service(*args: str, timeout_s: float = 90.0, port: int = 0) -> Iterator[tuple[str, Service]]:
    """Run `lenscal serve <args> --port <port>`; yield ("127.0.0.1:<port>", process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = Service(
        [sys.executable, "-m", "lenscal.cli", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    proc.lines = []
    found = threading.Event()
    endpoint: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            proc.lines.append(line)
            match = re.search(r"listening on (\S+:\d+)", line)
            if match and not endpoint:
                endpoint.append(match.group(1))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not found.wait(0.1):
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}:\n{''.join(proc.lines)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"service did not start within {timeout_s} s")
        yield endpoint[0], proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)


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
