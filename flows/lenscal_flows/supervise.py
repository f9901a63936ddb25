"""``python -m lenscal_flows.supervise PID -- COMMAND...``: run COMMAND in its own process
group and end the whole group (SIGTERM, then SIGKILL) when process PID is gone or when this
supervisor is told to stop. The Prefect server and worker lenscal starts for a run are
started through it, so killing `lenscal run` or `make demo` (even with SIGKILL) leaves no
server, worker or flow process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

from lenscal.lifeline import watch_exit


def _stop(child: subprocess.Popen[bytes], grace_s: float = 20.0) -> int:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)  # whatever of the group is left
    return child.wait()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m lenscal_flows.supervise PID -- COMMAND...", file=sys.stderr)
        return 2
    parent = int(argv[0])
    child = subprocess.Popen(argv[2:], start_new_session=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    watch_exit(parent, stopping.set)  # a pidfd: woken the moment the parent exits
    while child.poll() is None:
        if stopping.wait(0.2):
            return _stop(child)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
