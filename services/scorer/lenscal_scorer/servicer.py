"""The Scorer servicer: a thin gRPC adapter over lenscal.scoring.core.ScoringCore. It decodes
messages, hands the cutouts to the core, waits within the call's deadline and encodes the
reply; every rule (models, overrides, value policy, drain) lives in the core, every status
code in lenscal.rpc.status.

Calls are admitted per kind (unary, streams; lenscal.rpc.server.Admission), so idle or slow
clients cannot take the threads health checks and other calls need. A stream keeps at most
STREAM_WINDOW messages accepted ahead of its replies; when its client leaves, its deadline
passes, it stays idle past the idle timeout, or the server drains, its reader stops and
every accepted-but-unanswered message is cancelled before any compute."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from lenscal.errors import NotReadyError
from lenscal.preprocess_spec import PreprocessOverride
from lenscal.rpc.arrays import decode_batch
from lenscal.rpc.server import Admission, seconds_left
from lenscal.rpc.status import rpc_errors, rpc_stream_errors, status_for
from lenscal.scoring.api import ModelInfo, sigmoid
from lenscal.scoring.batcher import deadline_from
from lenscal.scoring.core import MAX_PER_SUBMISSION, ScoringCore, Submission
from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

SERVICE_NAME = "lenscal.scorer.v1.Scorer"
#: Messages of one stream accepted ahead of their replies.
STREAM_WINDOW = 16
#: How often a waiting stream looks at its client, the idle clock and the drain flag, s.
STREAM_POLL_S = 0.25

REQUESTS = Counter("lenscal_scorer_requests_total", "Score messages handled", ["rpc", "code"])
CUTOUTS = Counter("lenscal_scorer_cutouts_total", "Cutouts scored")
BATCH_SIZE = Histogram(
    "lenscal_scorer_batch_size", "Device batch size", buckets=(1, 8, 32, 64, 128, 256, 512, 1024, 2048)
)
QUEUE_DEPTH = Gauge("lenscal_scorer_queue_cutouts", "Cutouts waiting for a device batch")
QUEUE_SECONDS = Histogram("lenscal_scorer_queue_seconds", "Time from batch start-of-wait to compute")
COMPUTE_SECONDS = Histogram("lenscal_scorer_compute_seconds", "Device batch compute time")


def observe_batch(size: int, queued_s: float, compute_s: float) -> None:
    """ScoringCore's on_batch hook: Prometheus metrics of each device batch."""
    BATCH_SIZE.observe(size)
    QUEUE_SECONDS.observe(queued_s)
    COMPUTE_SECONDS.observe(compute_s)


class ScorerServicer(scorer_pb2_grpc.ScorerServicer):
    def __init__(
        self, core: ScoringCore, admission: Admission, *, stream_idle_timeout_s: float = 60.0
    ) -> None:
        self.core = core
        self.admission = admission
        self.stream_idle_timeout_s = stream_idle_timeout_s

    @rpc_errors
    def Score(
        self, request: scorer_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> scorer_pb2.ScoreResponse:
        with self.admission.enter("unary"):
            submission, ids = self._submit(request, context)
            # False: the call already ended (the client left while it was decoded); its work
            # is dropped now, before any compute, instead of when a batch reaches it.
            if not context.add_callback(submission.future.cancel):
                submission.future.cancel()
            return self._reply(submission, ids, request, context, "Score")

    @rpc_stream_errors
    def ScoreStream(
        self, request_iterator: Iterator[scorer_pb2.ScoreRequest], context: grpc.ServicerContext
    ) -> Iterator[scorer_pb2.ScoreResponse]:
        with self.admission.enter("streams"):
            yield from self._stream(request_iterator, context)

    def _stream(
        self, request_iterator: Iterator[scorer_pb2.ScoreRequest], context: grpc.ServicerContext
    ) -> Iterator[scorer_pb2.ScoreResponse]:
        # Requests are submitted as they arrive (a reader thread), replies go out in order.
        pending: queue.Queue[Any] = queue.Queue(maxsize=STREAM_WINDOW)
        stop = threading.Event()
        done = object()
        accepted = _Accepted()

        def offer(item: Any) -> bool:
            while not stop.is_set():
                try:
                    pending.put(item, timeout=STREAM_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for request in request_iterator:
                    if stop.is_set():
                        return
                    item = (request, *self._submit(request, context))
                    accepted.add(item[1])
                    if not offer(item):
                        item[1].future.cancel()
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
                    item = pending.get(timeout=STREAM_POLL_S)
                except queue.Empty:
                    if stop.is_set() or not context.is_active():
                        return
                    if self.core.draining:
                        raise NotReadyError(
                            "the scorer is draining; resend unanswered messages elsewhere"
                        ) from None
                    if time.monotonic() - last_activity > self.stream_idle_timeout_s:
                        raise TimeoutError(
                            f"no message for {self.stream_idle_timeout_s:g} s: the stream is closed"
                        ) from None
                    continue
                if item is done:
                    return
                if isinstance(item, Exception):
                    raise item
                request, submission, ids = item
                reply = self._reply(submission, ids, request, context, "ScoreStream")
                accepted.discard(submission)
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
                    left[1].future.cancel()

    @rpc_errors
    def GetModelInfo(
        self, request: scorer_pb2.ModelInfoRequest, context: grpc.ServicerContext
    ) -> scorer_pb2.ModelInfoResponse:
        return scorer_pb2.ModelInfoResponse(models=[_info(m) for m in self.core.model_info(request.model)])

    def drain(self, timeout_s: float) -> None:
        self.core.drain(timeout_s)

    # --- message <-> core ----------------------------------------------------------------

    def _submit(
        self, request: scorer_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> tuple[Submission, list[str]]:
        _, engine = self.core.engine(request.model)  # an unknown model is NOT_FOUND before decoding
        channels, size, _ = self.core.input_shape(engine, request.preprocessed)
        cutouts, ids = decode_batch(
            request.batch, field="batch", channels=channels, size=size, max_count=MAX_PER_SUBMISSION
        )
        submission = self.core.submit(
            cutouts,
            model=request.model,
            preprocessed=request.preprocessed,
            override=override_from_proto(request),
            return_embeddings=request.return_embeddings,
            deadline=deadline_from(seconds_left(context)),
        )
        QUEUE_DEPTH.set(self.core.queued)
        return submission, ids

    def _reply(
        self,
        submission: Submission,
        ids: list[str],
        request: scorer_pb2.ScoreRequest,
        context: grpc.ServicerContext,
        rpc: str,
    ) -> scorer_pb2.ScoreResponse:
        try:
            logits, embeddings = submission.future.result(timeout=seconds_left(context))
        except concurrent.futures.TimeoutError:
            submission.future.cancel()
            REQUESTS.labels(rpc, "DEADLINE_EXCEEDED").inc()
            raise TimeoutError("deadline exceeded while waiting for the device") from None
        except concurrent.futures.CancelledError:
            REQUESTS.labels(rpc, "CANCELLED").inc()
            raise
        except Exception as exc:
            REQUESTS.labels(rpc, status_for(exc).name).inc()
            raise
        CUTOUTS.inc(len(logits))
        REQUESTS.labels(rpc, "OK").inc()
        response = scorer_pb2.ScoreResponse(
            probabilities=sigmoid(logits).astype(np.float32).tolist(),
            logits=logits.tolist(),
            ids=ids,
            model_id=submission.model_id,
            request_tag=request.request_tag,
            preprocess_spec_json=submission.spec.to_json() if submission.spec is not None else "",
        )
        if embeddings is not None:
            response.embeddings = np.ascontiguousarray(embeddings, dtype="<f4").tobytes()
            response.embedding_dim = embeddings.shape[1]
        return response


class _Accepted:
    """A stream's submissions not yet answered, so the end of the call cancels all of them at
    once (from gRPC's callback thread) instead of one by one as the handler gets to them."""

    def __init__(self) -> None:
        self._items: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()

    def add(self, submission: Submission) -> None:
        with self._lock:
            self._items.add(submission.future)

    def discard(self, submission: Submission) -> None:
        with self._lock:
            self._items.discard(submission.future)

    def cancel_all(self) -> None:
        with self._lock:
            items, self._items = self._items, set()
        for future in items:
            future.cancel()


def override_from_proto(request: scorer_pb2.ScoreRequest) -> PreprocessOverride | None:
    """The fields the caller set in ``preprocess_override`` (None when none)."""
    message = request.preprocess_override
    changes = {f: getattr(message, f) for f in PreprocessOverride.model_fields if message.HasField(f)}
    return PreprocessOverride(**changes) if changes else None


def _info(model: ModelInfo) -> scorer_pb2.ModelInfo:
    channels, height, width = model.input_shape
    return scorer_pb2.ModelInfo(
        name=model.name,
        model_id=model.model_id,
        architecture=model.architecture,
        channels=channels,
        height=height,
        width=width,
        preprocess_spec_json=model.spec.to_json(),
        embedding_dim=model.embedding_dim,
        engine=model.engine,
        device=model.device,
        weights_sha256=model.weights_sha256,
        is_default=model.is_default,
        bundle_sha256=model.bundle_sha256,
    )
