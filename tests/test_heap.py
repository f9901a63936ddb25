"""The service heap policy (lenscal.rpc.heap) and the idle hook that drives it
(lenscal.rpc.server.Admission): free pages go back to the system once a server is idle, never
while it is busy, and trims never take more than their share of the time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from lenscal.errors import OverloadedError
from lenscal.rpc.heap import HeapTrimmer, malloc_trim
from lenscal.rpc.server import Admission


class FakeTrim:
    def __init__(self, takes_s: float = 0.0) -> None:
        self.at: list[float] = []
        self.takes_s = takes_s

    def __call__(self) -> None:
        self.at.append(time.monotonic())
        time.sleep(self.takes_s)


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_one_trim_after_the_last_idle_moment() -> None:
    trim = FakeTrim()
    trimmer = HeapTrimmer(lambda: True, delay_s=0.2, trim=trim)
    first = time.monotonic()
    trimmer.soon()
    time.sleep(0.1)
    last = time.monotonic()
    trimmer.soon()  # idle again before the delay ran out: the trim moves, it is not doubled
    assert wait_for(lambda: len(trim.at) == 1)
    time.sleep(0.4)
    assert len(trim.at) == 1
    assert trim.at[0] - last >= 0.2 - 1e-3
    assert trim.at[0] - first >= 0.3 - 1e-3


def test_no_trim_while_busy_and_the_next_idle_moment_asks_again() -> None:
    trim = FakeTrim()
    busy = threading.Event()
    busy.set()
    trimmer = HeapTrimmer(lambda: not busy.is_set(), delay_s=0.05, trim=trim)
    trimmer.soon()
    time.sleep(0.3)
    assert trim.at == []  # a call came in during the delay: no trim under load
    busy.clear()
    trimmer.soon()
    assert wait_for(lambda: len(trim.at) == 1)


def test_trims_take_at_most_their_share_of_the_time() -> None:
    trim = FakeTrim(takes_s=0.02)
    trimmer = HeapTrimmer(lambda: True, delay_s=0.0, min_interval_s=0.0, max_share=0.05, trim=trim)
    trimmer.soon()
    assert wait_for(lambda: len(trim.at) == 1)
    time.sleep(0.05)
    trimmer.soon()  # 0.02 s of trimming at 5%: the next one no sooner than 0.4 s after it ended
    assert wait_for(lambda: len(trim.at) == 2)
    assert trim.at[1] - trim.at[0] >= 0.02 + 0.4 - 1e-3


def test_admission_calls_on_idle_when_the_last_call_leaves() -> None:
    admission = Admission({"unary": 2, "streams": 1})
    calls: list[bool] = []
    admission.on_idle = lambda: calls.append(admission.idle)
    with admission.enter("unary"):
        with admission.enter("streams"):
            assert not admission.idle
        assert calls == []  # a unary call is still in flight
        with pytest.raises(OverloadedError), admission.enter("streams"), admission.enter("streams"):
            pass
        assert calls == []
    assert calls == [True]
    with pytest.raises(ValueError), admission.enter("unary"):
        raise ValueError("a failed call leaves too")
    assert calls == [True, True]


def test_malloc_trim_returns_the_holes_a_burst_leaves() -> None:
    """Against glibc itself (the services' Debian images and these machines have it, so a
    missing trim is a failure here, not a skip): 64 KiB buffers (below the 1 MiB mmap
    threshold services set) fill the heap, every tenth stays alive so its top cannot shrink,
    the rest are freed: RSS stays up until lenscal's trim, which gives the holes back."""
    assert malloc_trim() is not None, "glibc's malloc_trim not found through ctypes"
    script = """
import sys
sys.path[:0] = {path!r}
from pathlib import Path
from lenscal.rpc.heap import cap_malloc_arenas, malloc_trim
def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
cap_malloc_arenas()
blocks = [bytes(bytearray(b"x" * 65536)) for _ in range(4000)]
kept = blocks[::10]
del blocks
before = rss_mb()
malloc_trim()()
print(before, rss_mb())
"""
    out = subprocess.run(
        [sys.executable, "-I", "-c", script.format(path=sys.path)], capture_output=True, text=True, check=True
    )
    before, after = map(float, out.stdout.split())
    assert before - after > 150, (before, after)  # ~225 MiB freed of 250 MiB allocated
