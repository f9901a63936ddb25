"""A Prefect server and a worker for this machine, when none is configured: `lenscal run`
and `make demo` use them. The server keeps its SQLite database in $LENSCAL_HOME/prefect (so
runs and deployments persist between runs); both are supervised, so they stop with the
command that started them, however it ends."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lenscal.errors import LenscalError
from lenscal.home import lenscal_home
from lenscal.rpc.launch import stop_process
from lenscal_flows.deployments import POOL

#: Two loaded cores take 23-43 s to answer /api/health (PLATFORM.md); allow far more.
SERVER_START_TIMEOUT_S = 240.0
QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
    "PREFECT_WORKER_QUERY_SECONDS": "2",
    "PREFECT_RUNNER_POLL_FREQUENCY": "2",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _supervised(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "ab")  # noqa: SIM115  (lives as long as the process)
    return subprocess.Popen(
        [sys.executable, "-m", "lenscal_flows.supervise", str(os.getpid()), "--", *command],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=3) as reply:
            return reply.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def prefect_server(home: Path | None = None) -> Iterator[str]:
    """PREFECT_API_URL of the configured server, or of one started here for the block."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    prefect_home = home or lenscal_home() / "prefect"
    env = {**os.environ, **QUIET, "PREFECT_HOME": str(prefect_home)}
    log = prefect_home / "server.log"
    process = _supervised(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        log,
        env,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None:
                raise LenscalError(f"the Prefect server exited with {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise LenscalError(
                    f"the Prefect server did not answer within {SERVER_START_TIMEOUT_S:.0f} s; see {log}"
                )
            time.sleep(1.0)
        # Children read the environment; this process's Prefect reads its settings context,
        # loaded once at import: both must point at this server.
        os.environ.update({**QUIET, "PREFECT_API_URL": url, "PREFECT_HOME": str(prefect_home)})
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: prefect_home}):
            yield url
    finally:
        # Later Prefect calls in this process (log and event flushing at exit) must not start
        # an ephemeral server of their own once this one is gone.
        os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
        stop_process(process, grace_s=40)


@contextlib.contextmanager
def prefect_worker(pool: str = POOL, log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A process worker on ``pool`` (against PREFECT_API_URL) for the block."""
    env = {**os.environ, **QUIET}
    target = log or lenscal_home() / "prefect" / "worker.log"
    process = _supervised(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"], target, env
    )
    try:
        yield process
    finally:
        stop_process(process, grace_s=40)
