"""A bidirectional stream served with a bounded window: requests are accepted as they
arrive (a reader thread), replies go out in order, and at most ``window`` accepted requests
wait ahead of their replies. When the client leaves, its deadline passes, the stream stays
idle past ``idle_timeout_s`` or the server drains, the reader stops and every accepted but
unanswered request is cancelled at once (before any compute). Any service's streaming RPC
is this helper plus its accept / answer / cancel functions."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import grpc

from lenscal.errors import NotReadyError

R = TypeVar("R")  # a request message
A = TypeVar("A")  # accepted work (e.g. a submission with a future)
P = TypeVar("P")  # a reply message

#: How often a waiting stream looks at its client, the idle clock and the drain flag, s.
POLL_S = 0.25


class _Accepted(Generic[A]):
    """Accepted work not yet answered, so the end of the call cancels all of it at once (from
    gRPC's callback thread) instead of one by one as the handler gets to it."""

    def __init__(self, cancel: Callable[[A], object]) -> None:
        self._items: dict[int, A] = {}
        self._lock = threading.Lock()
        self._cancel = cancel

    def add(self, item: A) -> None:
        with self._lock:
            self._items[id(item)] = item

    def discard(self, item: A) -> None:
        with self._lock:
            self._items.pop(id(item), None)

    def cancel_all(self) -> None:
        with self._lock:
            items, self._items = self._items, {}
        for item in items.values():
            self._cancel(item)


def windowed_stream(
    requests: Iterator[R],
    context: grpc.ServicerContext,
    *,
    accept: Callable[[R], A],
    answer: Callable[[R, A], P],
    cancel: Callable[[A], object],
    window: int,
    idle_timeout_s: float,
    draining: Callable[[], bool] = lambda: False,
    poll_s: float = POLL_S,
) -> Iterator[P]:
    """Replies to ``requests`` in order: ``accept`` each request as it arrives (raising what
    the client should hear), ``answer`` it when its turn comes, ``cancel`` what is left."""
    pending: queue.Queue[Any] = queue.Queue(maxsize=window)
    stop = threading.Event()
    done = object()
    accepted: _Accepted[A] = _Accepted(cancel)

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=poll_s)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for request in requests:
                if stop.is_set():
                    return
                work = accept(request)
                accepted.add(work)
                if not offer((request, work)):
                    cancel(work)
                    return
        except Exception as exc:
            offer(exc)
        offer(done)

    def end() -> None:  # the client left or its deadline passed: drop its work at once
        stop.set()
        accepted.cancel_all()

    if not context.add_callback(end):
        end()
    threading.Thread(target=read, name="lenscal-stream-reader", daemon=True).start()
    last_activity = time.monotonic()
    try:
        while True:
            try:
                item = pending.get(timeout=poll_s)
            except queue.Empty:
                if stop.is_set() or not context.is_active():
                    return
                if draining():
                    raise NotReadyError(
                        "the server is draining; resend unanswered messages elsewhere"
                    ) from None
                if time.monotonic() - last_activity > idle_timeout_s:
                    raise TimeoutError(f"no message for {idle_timeout_s:g} s: the stream is closed") from None
                continue
            if item is done:
                return
            if isinstance(item, Exception):
                raise item
            request, work = item
            reply = answer(request, work)
            accepted.discard(work)
            yield reply
            last_activity = time.monotonic()
    finally:
        stop.set()
        accepted.cancel_all()
        while True:  # whatever was accepted but not answered is dropped before compute
            try:
                left = pending.get_nowait()
            except queue.Empty:
                break
            if isinstance(left, tuple):
                cancel(left[1])
