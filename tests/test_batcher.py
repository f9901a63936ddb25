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


class Slow(Recorder):
    """A device computing ``rate`` cutouts a second (a CPU with a big model)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def __call__(self, key: Hashable, cutouts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        time.sleep(len(cutouts) / self.rate)
        return super().__call__(key, cutouts)


def test_a_slow_device_computes_in_slices_and_results_stay_whole_and_in_order() -> None:
    runner = Slow(rate=400.0)
    batcher = MicroBatcher(runner, max_batch_size=64, batch_wait_timeout_s=0.0)
    batcher.submit("m", tagged([0.5] * 64)).result(10)  # the rate is measured: 400/s
    assert batcher.slice_size() == 64  # 400/s x 0.25 s = 100, capped by the batch size
    runner.rate = 100.0
    for _ in range(12):  # the moving average follows the slower device
        batcher.submit("m", tagged([0.5] * 16)).result(10)
    assert 16 <= batcher.slice_size() < 40  # about 100/s x 0.25 s
    runner.batches.clear()
    values = [float(v) for v in range(150)]
    logits = batcher.submit("m", tagged(values)).result(30)[0]
    assert logits.tolist() == values  # split across slices, delivered whole and in order
    assert max(size for _, size in runner.batches) <= batcher.max_batch_size and len(runner.batches) >= 3
    batcher.close()


def test_a_cancelled_request_leaves_the_queue_and_its_remaining_slices_are_skipped() -> None:
    runner = Slow(rate=200.0)
    batcher = MicroBatcher(runner, max_batch_size=256, batch_wait_timeout_s=0.0)
    batcher.submit("m", tagged([0.0] * 32)).result(10)  # rate measured: slices of 50
    runner.seen.clear()
    abandoned = batcher.submit("m", tagged([1.0] * 256))
    queued = batcher.submit("m", tagged([2.0] * 256))  # waits in the queue behind it
    time.sleep(0.1)
    assert queued.cancel() and batcher.queued == 0  # left the queue at once
    assert abandoned.cancel()
    started = time.monotonic()
    fresh = batcher.submit("m", tagged([3.0] * 4))
    assert fresh.result(10)[0].tolist() == [3.0] * 4
    waited = time.monotonic() - started
    assert waited < 1.0, f"the fresh request waited {waited:.2f} s behind cancelled work"
    assert runner.seen.count(2.0) == 0 and runner.seen.count(1.0) < 256  # not computed whole
    batcher.close()


def test_every_request_cancelled_while_a_batch_fills_leaves_the_batcher_serving() -> None:
    """The queue emptied by cancellations while the batcher waited for it to fill: its
    thread died on an empty queue and every later call waited out its deadline."""
    runner = Recorder()
    batcher = MicroBatcher(runner, max_batch_size=64, batch_wait_timeout_s=0.5)
    for _ in range(5):
        abandoned = batcher.submit("m", tagged([1.0] * 8))
        time.sleep(0.05)  # the batcher is waiting for the batch to fill
        assert abandoned.cancel()
    assert batcher.submit("m", tagged([2.0] * 3)).result(5)[0].tolist() == [2.0] * 3
    assert 1.0 not in runner.seen
    batcher.close()
