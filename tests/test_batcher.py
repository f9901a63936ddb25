"""The micro-batcher on its own: packing across requests, splitting, order, overload,
deadlines, cancellation, draining."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

import numpy as np
import pytest

from lenscal.errors import NotReadyError, OverloadedError
from lenscal.scoring.batcher import MicroBatcher


class Recorder:
    """A runner whose logit is the cutout's first pixel, recording every batch it saw."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[tuple[Hashable, int]] = []
        self.seen: list[float] = []
        self.gate = gate

    def __call__(self, key: Hashable, cutouts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append((key, len(cutouts)))
        self.seen.extend(cutouts[:, 0, 0, 0].tolist())
        return cutouts[:, 0, 0, 0].astype(np.float32), None


def tagged(values: list[float]) -> np.ndarray:
    x = np.zeros((len(values), 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = values
    return x


def test_requests_are_packed_together_and_split_back_in_order() -> None:
    runner = Recorder()
    batcher = MicroBatcher(runner, max_batch_size=8, batch_wait_timeout_s=0.2)
    a = batcher.submit("m", tagged([1, 2, 3]))
    b = batcher.submit("m", tagged([4, 5]))
    c = batcher.submit("other", tagged([6]))
    assert a.result(5)[0].tolist() == [1, 2, 3] and b.result(5)[0].tolist() == [4, 5]
    assert c.result(5)[0].tolist() == [6]
    assert ("m", 5) in runner.batches and ("other", 1) in runner.batches  # keys never mix
    batcher.close()


def test_a_large_request_is_cut_into_device_batches() -> None:
    runner = Recorder()
    batcher = MicroBatcher(runner, max_batch_size=4, batch_wait_timeout_s=0.0)
    values = list(range(11))
    assert batcher.submit("m", tagged(values)).result(5)[0].tolist() == values
    assert max(size for _, size in runner.batches) <= 4 and sum(size for _, size in runner.batches) == 11
    batcher.close()


def test_overload_deadline_cancellation_and_drain() -> None:
    gate = threading.Event()
    runner = Recorder(gate)
    batcher = MicroBatcher(runner, max_batch_size=2, batch_wait_timeout_s=0.0, max_queue=6)
    first = batcher.submit("m", tagged([1, 2]))  # taken by the worker, which blocks on the gate
    time.sleep(0.2)
    expired = batcher.submit("m", tagged([3, 4]), deadline=time.monotonic() + 0.05)
    cancelled = batcher.submit("m", tagged([5, 6]))
    kept = batcher.submit("m", tagged([7, 8]))
    with pytest.raises(OverloadedError, match="queue full"):
        batcher.submit("m", tagged([9]))
    assert cancelled.cancel()
    time.sleep(0.1)
    gate.set()
    assert first.result(5)[0].tolist() == [1, 2] and kept.result(5)[0].tolist() == [7, 8]
    with pytest.raises(TimeoutError):
        expired.result(5)
    assert 5.0 not in runner.seen and 3.0 not in runner.seen  # dropped before compute
    batcher.close()
    with pytest.raises(NotReadyError):
        batcher.submit("m", tagged([1]))


def test_a_failing_batch_fails_only_its_requests() -> None:
    def runner(key: Hashable, cutouts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if key == "bad":
            raise RuntimeError("device error")
        return cutouts[:, 0, 0, 0], None

    batcher = MicroBatcher(runner, max_batch_size=8, batch_wait_timeout_s=0.0)
    with pytest.raises(RuntimeError, match="device error"):
        batcher.submit("bad", tagged([1])).result(5)
    assert batcher.submit("good", tagged([2])).result(5)[0].tolist() == [2]
    batcher.close()
