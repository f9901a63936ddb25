"""Start a lenscal service as a child process on this machine and learn its address: for
the demo, local flows, benchmarks and tests. The child is `python -m lenscal.cli serve
<service> ...`, so it runs the same code a container runs; nothing here imports a service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from lenscal.lifeline import PARENT_ENV

_LISTENING = re.compile(r"listening on (\S+:\d+)")


class Service(subprocess.Popen[str]):
    """A service process whose output is read continuously (a chatty server never blocks on
    a full pipe) and kept in ``lines``."""

    lines: list[str]


#: How a service is started: `lenscal serve <service> ...`.
SERVE = (sys.executable, "-m", "lenscal.cli", "serve")


@contextmanager
def running_service(
    *args: str,
    timeout_s: float = 90.0,
    port: int = 0,
    echo: bool = False,
    program: Sequence[str] = SERVE,
) -> Iterator[tuple[str, Service]]:
    """Run `<program> <args> --port <port>` (port 0: any free port); yield ("host:port",
    process) once it listens; stop it (SIGTERM, then SIGKILL after 30 s) on exit. ``echo``
    copies the service's log lines to stderr as they come."""
    # The service stops itself when this process is gone, even after a SIGKILL (a killed
    # flow or demo never leaves services behind): lenscal.rpc.server watches this pid.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
    proc = Service(
        [*program, *args, "--port", str(port)],
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
            if echo:
                sys.stderr.write(line)
            match = _LISTENING.search(line)
            if match and not endpoint:
                endpoint.append(match.group(1))
                found.set()

    reader = threading.Thread(target=read, daemon=True, name=f"lenscal-{args[0] if args else 'service'}-log")
    reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not found.wait(0.1):
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}:\n{''.join(proc.lines)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"service did not start within {timeout_s} s:\n{''.join(proc.lines)}")
        yield endpoint[0], proc
    finally:
        stop_process(proc)
        reader.join(timeout=5)


def stop_process(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM (a service drains, a server shuts down), then SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
