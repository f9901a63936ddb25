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
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lenscal.errors import NotReadyError, OverloadedError, RequestError

log = logging.getLogger("lenscal.scoring")

#: Seconds of compute per slice of a batch on a slow device (see MicroBatcher._loop).
SLICE_S = 0.25
MIN_SLICE = 16

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
        # A bound method, not a closure over the request: a future outlives its call in gRPC's
        # bookkeeping, and must not keep the request's cutouts alive with it.
        request.future.add_done_callback(self._forget)
        return request.future

    def _forget(self, future: Future[Any]) -> None:
        """A cancelled request leaves the queue at once: its cutouts are freed and count
        against the queue limit no longer, and no batch waits for them."""
        if not future.cancelled():
            return
        with self._cond:
            kept = deque(p for p in self._pieces if p.request.future is not future)
            self._queued -= sum(p.stop - p.start for p in self._pieces if p.request.future is future)
            self._pieces = kept

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
            while True:
                while not self._pieces:
                    if self._closed:
                        return None
                    self._cond.wait()
                first_arrival = time.monotonic()
                # While this waits for the batch to fill, cancelled requests may leave the
                # queue (MicroBatcher._forget), down to none: then wait for work again.
                while self._pieces:
                    key = self._pieces[0].request.key
                    size = sum(p.stop - p.start for p in self._pieces if p.request.key == key)
                    remaining = self.wait_s - (time.monotonic() - first_arrival)
                    if size >= self.max_batch_size or remaining <= 0 or self._closed:
                        break
                    self._cond.wait(remaining)
                if self._pieces:
                    break
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
            try:
                if not self._serve_one_batch():
                    return
            except Exception:  # a bug here must not leave every later call waiting forever
                log.exception("micro-batcher: unexpected error; continuing")

    def _serve_one_batch(self) -> bool:
        """Take one batch and compute it; False once closed and drained."""
        batch = self._take_batch()
        if batch is None:
            return False
        now = time.monotonic()
        live = [p for p in batch if self._still_wanted(p.request, now)]
        del batch  # cancelled pieces are not held while the batch computes
        # A slow device computes a batch in slices of about SLICE_S, and a slice whose
        # requests were all cancelled meanwhile is skipped: a fresh call waits behind at
        # most one slice of abandoned work, not a whole batch (a fast device: one slice).
        # Materialised first: splitting a piece raises its request's count of pieces, which
        # must be in place before any part of it is delivered.
        for group in list(_slices(live, self.slice_size())):
            group = [p for p in group if self._still_wanted(p.request, time.monotonic())]
            if group:
                self._compute(group, now)
        return True

    def slice_size(self) -> int:
        """Cutouts computed at once: the whole batch until the rate is measured, then what
        the device computes in about SLICE_S seconds (at least MIN_SLICE)."""
        if self._rate is None:
            return self.max_batch_size
        return int(min(self.max_batch_size, max(MIN_SLICE, self._rate * SLICE_S)))

    @staticmethod
    def _still_wanted(request: _Request, now: float) -> bool:
        if request.future.done():
            return False  # client gone, or an earlier piece already failed
        if request.deadline is not None and now > request.deadline:
            _settle(request.future, exception=TimeoutError("deadline passed while queued"))
            return False
        return True

    def _compute(self, live: list[_Piece], taken_at: float) -> None:
        cutouts = np.concatenate([p.request.cutouts[p.start : p.stop] for p in live])
        started = time.monotonic()
        try:
            logits, embeddings = self._run(live[0].request.key, cutouts)
        except Exception as exc:
            for piece in live:
                _settle(piece.request.future, exception=exc)
            return
        finished = time.monotonic()
        self.stats.batches += 1
        self.stats.cutouts += len(cutouts)
        rate = len(cutouts) / max(finished - started, 1e-6)
        self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
        if self._on_batch is not None:
            self._on_batch(len(cutouts), started - taken_at, finished - started)
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
            problem = (
                f"cutout {piece.start + int(bad[0])} gives a non-finite score (its values overflow after "
                "preprocessing)"
            )
            _settle(request.future, exception=RequestError("batch.data", problem))
            return
        if request.logits is None:
            request.logits = np.empty(len(request.cutouts), dtype=np.float32)
            if embeddings is not None:
                request.embeddings = np.empty((len(request.cutouts), embeddings.shape[1]), dtype=np.float32)
        request.logits[piece.start : piece.stop] = logits
        if embeddings is not None and request.embeddings is not None:
            request.embeddings[piece.start : piece.stop] = embeddings
        request.pieces_left -= 1
        if request.pieces_left == 0:
            _settle(request.future, result=(request.logits, request.embeddings))


def _slices(pieces: list[_Piece], size: int) -> Iterator[list[_Piece]]:
    """``pieces`` in groups of at most ``size`` cutouts, splitting a larger piece (its request
    then waits for one more piece)."""
    group: list[_Piece] = []
    total = 0
    for piece in pieces:
        start = piece.start
        while start < piece.stop:
            stop = min(piece.stop, start + size - total)
            if start != piece.start or stop != piece.stop:
                if start == piece.start:
                    piece.request.pieces_left -= 1  # the whole piece is replaced by its parts
                piece.request.pieces_left += 1
            group.append(_Piece(piece.request, start, stop))
            total += stop - start
            start = stop
            if total >= size:
                yield group
                group, total = [], 0
    if group:
        yield group


def _settle(future: Future[Any], *, result: Any = None, exception: BaseException | None = None) -> None:
    """Resolve ``future`` unless it is already done: a client may cancel it at any moment,
    from another thread, between a check and the set (InvalidStateError would end the loop)."""
    if future.done():
        return
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass  # cancelled meanwhile


def deadline_from(seconds_left: float | None) -> float | None:
    """Seconds left (None: no deadline) -> a time.monotonic() deadline."""
    return None if seconds_left is None else time.monotonic() + float(seconds_left)
