"""Dying with the starter: lenscal.lifeline wakes the moment the watched process exits. The
old watch polled kill(pid, 0), which a zombie (exited, not yet reaped) or a reused PID
passes as alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from lenscal.lifeline import watch_exit


def test_the_watch_fires_when_the_process_exits_even_unreaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    gone = threading.Event()
    watch_exit(child.pid, gone.set)
    assert not gone.wait(0.5)  # alive: nothing fired
    os.kill(child.pid, signal.SIGKILL)
    # Not reaped yet: a zombie still answers kill(pid, 0), so a poll would call it alive.
    os.kill(child.pid, 0)
    started = time.monotonic()
    assert gone.wait(60), "the watch did not fire"
    assert time.monotonic() - started < 30
    child.wait()


def test_a_process_already_gone_fires_at_once() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = threading.Event()
    watch_exit(child.pid, gone.set)
    assert gone.is_set()
