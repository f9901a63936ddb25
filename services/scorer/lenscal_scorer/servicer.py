"""The Scorer servicer: a thin gRPC adapter over lenscal.scoring.core.ScoringCore. It decodes
messages (lenscal.rpc.scorer_codec), hands the cutouts to the core, waits within the call's
deadline and encodes the reply; every rule (models, overrides, value policy, drain) lives in
the core, every status code in lenscal.rpc.status.

Calls are admitted per kind (unary, streams; lenscal.rpc.server.Admission), so idle or slow
clients cannot take the threads health checks and other calls need. A stream is served by
lenscal.rpc.windowing: at most STREAM_WINDOW messages accepted ahead of their replies, and
every accepted-but-unanswered message cancelled before any compute when the call ends."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import grpc
from prometheus_client import Counter, Gauge, Histogram

from lenscal.rpc.scorer_codec import model_info_to_proto, override_from_proto, request_cutouts, score_response
from lenscal.rpc.server import Admission, seconds_left
from lenscal.rpc.status import rpc_errors, rpc_stream_errors, status_for
from lenscal.rpc.windowing import windowed_stream
from lenscal.scoring.batcher import deadline_from
from lenscal.scoring.core import MAX_PER_SUBMISSION, ScoringCore, Submission
from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

#: Messages of one stream accepted ahead of their replies.
STREAM_WINDOW = 16

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
            yield from windowed_stream(
                request_iterator,
                context,
                accept=lambda request: (*self._submit(request, context), request),
                answer=lambda request, work: self._reply(work[0], work[1], request, context, "ScoreStream"),
                cancel=lambda work: work[0].future.cancel(),
                window=STREAM_WINDOW,
                idle_timeout_s=self.stream_idle_timeout_s,
                draining=lambda: self.core.draining,
            )

    @rpc_errors
    def GetModelInfo(
        self, request: scorer_pb2.ModelInfoRequest, context: grpc.ServicerContext
    ) -> scorer_pb2.ModelInfoResponse:
        return scorer_pb2.ModelInfoResponse(
            models=[model_info_to_proto(m) for m in self.core.model_info(request.model)]
        )

    def drain(self, timeout_s: float) -> None:
        self.core.drain(timeout_s)

    # --- message <-> core ----------------------------------------------------------------

    def _submit(
        self, request: scorer_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> tuple[Submission, list[str]]:
        _, engine = self.core.engine(request.model)  # an unknown model is NOT_FOUND before decoding
        channels, size, _ = self.core.input_shape(engine, request.preprocessed)
        cutouts, ids = request_cutouts(request, channels=channels, size=size, max_count=MAX_PER_SUBMISSION)
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
        return score_response(
            logits,
            embeddings,
            ids=ids,
            model_id=submission.model_id,
            tag=request.request_tag,
            spec=submission.spec,
        )
