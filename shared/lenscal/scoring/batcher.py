"""The cross-request micro-batcher: requests from every client are cut into pieces and
packed into device batches of up to ``max_batch_size`` cutouts, waiting at most
``batch_wait_timeout_s`` for a batch to fill. Each request gets a Future resolved with its
own slice of the results, in order.

- Bounded queue: past ``max_queue`` cutouts waiting, ``submit`` raises OverloadedError
  (RESOURCE_EXHAUSTED) with a retry hint: the time the queue takes to drain at the measured
  compute rate (a moving average of recent batches).
- Never a NaN score: a piece whose logits are not finite (a cutout that overflows after
  preprocessing) fails with a RequestError naming the cutout; its batch-mates are unaffected.
- Deadlines: a piece whose deadline passed before its batch ran fails with TimeoutError;
  a cancelled request (client gone) is dropped before compute.
- Only pieces with the same key (model, preprocessing, embeddings) share a batch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from lenscal.errors import NotReadyError, OverloadedError, RequestError

Runner = Callable[[Hashable, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class _Request:
    key: Hashable
    cutouts: np.ndarray
    deadline: float | None
    future: Future[tuple[np.ndarray, np.ndarray | None]] = field(default_factory=Future)
    pieces_left: int = 0
    logits: np.ndarray | None = None
    embeddings: np.ndarray | None = None


@dataclass
class _Piece:
    request: _Request
    start: int
    stop: int


@dataclass
class BatcherStats:
    batches: int = 0
    cutouts: int = 0


class MicroBatcher:
    def __init__(
        self,
        run: Runner,
        *,
        max_batch_size: int = 512,
        batch_wait_timeout_s: float = 0.005,
        max_queue: int = 16384,
        on_batch: Callable[[int, float, float], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.wait_s = batch_wait_timeout_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._pieces: deque[_Piece] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self.stats = BatcherStats()
        self._rate: float | None = None  # cutouts per second of compute, moving average
        self._thread = threading.Thread(target=self._loop, name="lenscal-batcher", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queued

    def submit(
        self, key: Hashable, cutouts: np.ndarray, deadline: float | None = None
    ) -> Future[tuple[np.ndarray, np.ndarray | None]]:
        """Queue (N, C, H, W) cutouts; the Future yields (logits (N,), embeddings or None)."""
        request = _Request(key, cutouts, deadline)
        n = len(cutouts)
        bounds = [*list(range(0, n, self.max_batch_size)), n]
        pieces = [_Piece(request, a, b) for a, b in itertools.pairwise(bounds)]
        request.pieces_left = len(pieces)
        with self._cond:
            if self._closed:
                raise NotReadyError("the scorer is draining; retry on another replica")
            if self._queued + n > self.max_queue:
                raise OverloadedError(
                    f"queue full ({self._queued} cutouts waiting, limit {self.max_queue}); retry later",
                    retry_after_s=self.drain_time_s(),
                )
            self._pieces.extend(pieces)
            self._queued += n
            self._cond.notify()
        return request.future

    def drain_time_s(self) -> float:
        """Seconds the waiting cutouts take at the measured rate (0.05-10 s; 0.5 s unmeasured)."""
        if self._rate is None:
            return 0.5
        return min(10.0, max(0.05, self._queued / self._rate))

    def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new work, finish what was accepted."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _take_batch(self) -> list[_Piece] | None:
        with self._cond:
            while not self._pieces:
                if self._closed:
                    return None
                self._cond.wait()
            first_arrival = time.monotonic()
            while True:
                size = sum(
                    p.stop - p.start for p in self._pieces if p.request.key == self._pieces[0].request.key
                )
                remaining = self.wait_s - (time.monotonic() - first_arrival)
                if size >= self.max_batch_size or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            key = self._pieces[0].request.key
            batch: list[_Piece] = []
            total = 0
            kept: deque[_Piece] = deque()
            while self._pieces:
                piece = self._pieces.popleft()
                n = piece.stop - piece.start
                if piece.request.key == key and total + n <= self.max_batch_size:
                    batch.append(piece)
                    total += n
                else:
                    kept.append(piece)
            self._pieces = kept
            self._queued -= total
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            now = time.monotonic()
            live: list[_Piece] = []
            for piece in batch:
                request = piece.request
                if request.future.cancelled() or request.future.done():
                    continue  # client gone, or an earlier piece already failed
                if request.deadline is not None and now > request.deadline:
                    request.future.set_exception(TimeoutError("deadline passed while queued"))
                    continue
                live.append(piece)
            if not live:
                continue
            cutouts = np.concatenate([p.request.cutouts[p.start : p.stop] for p in live])
            started = time.monotonic()
            try:
                logits, embeddings = self._run(live[0].request.key, cutouts)
            except Exception as exc:
                for piece in live:
                    if not piece.request.future.done():
                        piece.request.future.set_exception(exc)
                continue
            finished = time.monotonic()
            self.stats.batches += 1
            self.stats.cutouts += len(cutouts)
            rate = len(cutouts) / max(finished - started, 1e-6)
            self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
            if self._on_batch is not None:
                self._on_batch(len(cutouts), started - now, finished - started)
            offset = 0
            for piece in live:
                n = piece.stop - piece.start
                self._deliver(
                    piece,
                    logits[offset : offset + n],
                    None if embeddings is None else embeddings[offset : offset + n],
                )
                offset += n

    @staticmethod
    def _deliver(piece: _Piece, logits: np.ndarray, embeddings: np.ndarray | None) -> None:
        request = piece.request
        bad = np.flatnonzero(~np.isfinite(logits))
        if bad.size:
            if not request.future.done():
                request.future.set_exception(
                    RequestError(
                        "batch.data",
                        f"cutout {piece.start + int(bad[0])} gives a non-finite score (its values overflow "
                        "after preprocessing)",
                    )
                )
            return
        if request.logits is None:
            request.logits = np.empty(len(request.cutouts), dtype=np.float32)
            if embeddings is not None:
                request.embeddings = np.empty((len(request.cutouts), embeddings.shape[1]), dtype=np.float32)
        request.logits[piece.start : piece.stop] = logits
        if embeddings is not None and request.embeddings is not None:
            request.embeddings[piece.start : piece.stop] = embeddings
        request.pieces_left -= 1
        if request.pieces_left == 0 and not request.future.done():
            request.future.set_result((request.logits, request.embeddings))


def deadline_from(seconds_left: float | None) -> float | None:
    """Seconds left (None: no deadline) -> a time.monotonic() deadline."""
    return None if seconds_left is None else time.monotonic() + float(seconds_left)
