"""Dying with the process that started you: services a flow starts, and the supervisor of a
local Prefect server and worker, stop when their starter is gone, even after kill -9.

The watch holds a pidfd of the starter (Linux >= 5.3): the kernel makes it readable the
moment that process exits, so there is no polling delay, and a PID reused by another process
cannot keep the watcher alive (a pidfd names one process, not a number). Where pidfds are
not available the watch falls back to polling ``kill(pid, 0)`` (with that weakness)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

log = logging.getLogger("lenscal.lifeline")

#: Set by whoever starts a child that must not outlive it: the starter's pid.
PARENT_ENV = "LENSCAL_EXIT_WITH_PID"


def watch_exit(pid: int, callback: Callable[[], None], poll_s: float = 1.0) -> None:
    """Call ``callback`` (once, from a daemon thread) when process ``pid`` exits; at once when
    it is already gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        callback()
        return
    except (AttributeError, OSError):  # no pidfd_open here (old kernel, not Linux)
        fd = -1

    def by_pidfd() -> None:
        assert fd >= 0
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll(None):
                pass
        finally:
            os.close(fd)
        callback()

    def by_polling() -> None:
        stop = threading.Event()
        while not stop.wait(poll_s):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                callback()
                return
            except PermissionError:
                pass  # alive, another user's

    target = by_pidfd if fd >= 0 else by_polling
    threading.Thread(target=target, name=f"lenscal-watch-{pid}", daemon=True).start()


def parent_from_env() -> int | None:
    """The starter's pid from $LENSCAL_EXIT_WITH_PID (None when unset or not a pid)."""
    with contextlib.suppress(ValueError):
        pid = int(os.environ.get(PARENT_ENV, "0") or 0)
        return pid if pid > 0 else None
    return None
