"""The Scorer servicer: decode and validate, hand the cutouts to the micro-batcher, encode.
Status codes come from lenscal.serving.errors (one place)."""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Hashable, Iterator
from typing import Any

import grpc
import numpy as np
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from lenscal.preprocess import PreprocessSpec
from lenscal.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from lenscal.scoring.batcher import MicroBatcher, deadline_from
from lenscal.scoring.engines import Engine
from lenscal.serving.arrays import decode_batch
from lenscal.serving.errors import (
    NotFoundError,
    NotReadyError,
    RequestError,
    UnauthenticatedError,
    rpc_errors,
    rpc_stream_errors,
    status_for,
)

SERVICE_NAME = "lenscal.scorer.v1.Scorer"
MAX_PER_MESSAGE = 4096
log = logging.getLogger("lenscal.scorer")

REQUESTS = Counter("lenscal_scorer_requests_total", "Score messages handled", ["rpc", "code"])
CUTOUTS = Counter("lenscal_scorer_cutouts_total", "Cutouts scored")
BATCH_SIZE = Histogram(
    "lenscal_scorer_batch_size", "Device batch size", buckets=(1, 8, 32, 64, 128, 256, 512, 1024, 2048)
)
QUEUE_DEPTH = Gauge("lenscal_scorer_queue_cutouts", "Cutouts waiting for a device batch")
QUEUE_SECONDS = Histogram("lenscal_scorer_queue_seconds", "Time from batch start-of-wait to compute")
COMPUTE_SECONDS = Histogram("lenscal_scorer_compute_seconds", "Device batch compute time")


class ScorerServicer(scorer_pb2_grpc.ScorerServicer):
    def __init__(
        self,
        engines: dict[str, Engine],
        *,
        max_batch_size: int = 512,
        batch_wait_timeout_s: float = 0.005,
        max_queue: int = 16384,
    ) -> None:
        if not engines:
            raise ValueError("at least one model")
        self._draining = False
        self._in_flight = 0
        self._idle = threading.Condition()
        self.engines = engines
        self.default = next(iter(engines))
        self.batcher = MicroBatcher(
            self._run,
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=batch_wait_timeout_s,
            max_queue=max_queue,
            on_batch=self._observe,
        )

    # --- batch execution (batcher thread) ------------------------------------------------

    def _run(self, key: Hashable, cutouts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        name, spec_json, embeddings = key  # type: ignore[misc]
        spec = None if spec_json is None else PreprocessSpec.from_json(spec_json)
        return self.engines[name].infer(cutouts, spec, embeddings)

    def _observe(self, size: int, queued_s: float, compute_s: float) -> None:
        BATCH_SIZE.observe(size)
        QUEUE_SECONDS.observe(queued_s)
        COMPUTE_SECONDS.observe(compute_s)
        QUEUE_DEPTH.set(self.batcher.queued)

    def warm_up(self) -> None:
        for name, engine in self.engines.items():
            engine.infer(np.zeros((2, 3, 101, 101), np.float32), engine.bundle.spec, True)
            log.info("model %s warm (%s on %s)", name, engine.name, engine.device)

    # --- RPCs ----------------------------------------------------------------------------

    @rpc_errors
    def Score(
        self, request: scorer_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> scorer_pb2.ScoreResponse:
        future, finish = self._submit(request, context)
        context.add_callback(future.cancel)
        return self._wait(future, finish, context, "Score")

    @rpc_stream_errors
    def ScoreStream(
        self, request_iterator: Iterator[scorer_pb2.ScoreRequest], context: grpc.ServicerContext
    ) -> Iterator[scorer_pb2.ScoreResponse]:
        # Requests are submitted as they arrive (a reader thread), replies go out in order.
        pending: queue.Queue[Any] = queue.Queue(maxsize=64)
        done = object()

        def read() -> None:
            try:
                for request in request_iterator:
                    pending.put(self._submit(request, context))
            except Exception as exc:
                pending.put(exc)
            pending.put(done)

        threading.Thread(target=read, name="lenscal-stream-reader", daemon=True).start()
        while True:
            item = pending.get()
            if item is done:
                return
            if isinstance(item, Exception):
                raise item
            future, finish = item
            yield self._wait(future, finish, context, "ScoreStream")

    @rpc_errors
    def GetModelInfo(
        self, request: scorer_pb2.ModelInfoRequest, context: grpc.ServicerContext
    ) -> scorer_pb2.ModelInfoResponse:
        names = [request.model] if request.model else list(self.engines)
        return scorer_pb2.ModelInfoResponse(models=[self._info(self._engine(n)[0]) for n in names])

    # --- helpers -------------------------------------------------------------------------

    def _engine(self, name: str) -> tuple[str, Engine]:
        name = name or self.default
        if name not in self.engines:
            raise NotFoundError(f"model: unknown model {name!r}; loaded: {sorted(self.engines)}")
        return name, self.engines[name]

    def _info(self, name: str) -> scorer_pb2.ModelInfo:
        engine = self.engines[name]
        meta = engine.bundle.meta
        return scorer_pb2.ModelInfo(
            name=name,
            model_id=engine.bundle.model_id,
            architecture=meta["arch"],
            channels=3,
            height=101,
            width=101,
            preprocess_spec_json=engine.bundle.spec.to_json(),
            embedding_dim=int(meta["embedding_dim"]),
            engine=engine.name,
            device=engine.device,
            weights_sha256=meta["provenance"]["weights_sha256"],
            is_default=name == self.default,
        )

    def drain(self, timeout_s: float) -> None:
        """Refuse new messages with UNAVAILABLE; wait (at most timeout_s) for accepted ones."""
        with self._idle:
            self._draining = True
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)
        self.batcher.close(timeout_s)

    def _done(self, _future: Any) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _submit(self, request: scorer_pb2.ScoreRequest, context: grpc.ServicerContext) -> tuple[Any, Any]:
        if self._draining:
            raise NotReadyError("the scorer is draining (shutting down); retry on another replica")
        name, engine = self._engine(request.model)
        cutouts, ids = decode_batch(
            request.batch, field="batch", channels=3, size=101, max_count=MAX_PER_MESSAGE
        )
        spec_json = self._spec(request, engine)
        self._check_values(cutouts, raw=spec_json is not None)
        with self._idle:
            if self._draining:
                raise NotReadyError("the scorer is draining (shutting down); retry on another replica")
            self._in_flight += 1
        try:
            future = self.batcher.submit(
                (name, spec_json, bool(request.return_embeddings)),
                cutouts,
                deadline_from(context.time_remaining()),
            )
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)

        def finish(logits: np.ndarray, embeddings: np.ndarray | None) -> scorer_pb2.ScoreResponse:
            response = scorer_pb2.ScoreResponse(
                probabilities=(1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32).tolist(),
                logits=logits.tolist(),
                ids=ids,
                model_id=engine.bundle.model_id,
                request_tag=request.request_tag,
                preprocess_spec_json=spec_json or "",
            )
            if embeddings is not None:
                response.embeddings = np.ascontiguousarray(embeddings, dtype="<f4").tobytes()
                response.embedding_dim = embeddings.shape[1]
            return response

        return future, finish

    @staticmethod
    def _spec(request: scorer_pb2.ScoreRequest, engine: Engine) -> str | None:
        override = request.preprocess_override
        fields = {
            f: getattr(override, f)
            for f in ("clip_range", "annulus_r_in", "annulus_r_out")
            if override.HasField(f)
        }
        if request.preprocessed:
            if fields:
                raise RequestError("preprocess_override", "cannot apply to a batch marked preprocessed")
            return None
        try:
            return engine.bundle.spec.with_overrides(**fields).to_json()
        except ValidationError as exc:
            problem = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
            raise RequestError("preprocess_override", problem) from None

    @staticmethod
    def _check_values(cutouts: np.ndarray, *, raw: bool) -> None:
        """Policy: NaN pixels are legal in raw cutouts (masked; preprocessing sets them to 0);
        infinities never are; a preprocessed batch must be all finite."""
        finite = np.isfinite(cutouts)
        if finite.all():
            return
        infinite = int(np.isinf(cutouts).sum())
        if infinite:
            raise RequestError(
                "batch.data", f"holds {infinite} infinite value(s); only NaN (masked) pixels are allowed"
            )
        if not raw:
            raise RequestError(
                "batch.data", f"holds {int((~finite).sum())} NaN value(s) in a preprocessed batch"
            )

    def _wait(
        self, future: Any, finish: Any, context: grpc.ServicerContext, rpc: str
    ) -> scorer_pb2.ScoreResponse:
        remaining = context.time_remaining()
        try:
            logits, embeddings = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            future.cancel()
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
        return finish(logits, embeddings)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Every RPC but health checks needs ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}"

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            error = UnauthenticatedError("missing or wrong bearer token (metadata 'authorization')")
            context.abort(status_for(error), str(error))

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(lambda _requests, ctx: deny(None, ctx))

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("authorization") == self.expected:
            return continuation(handler_call_details)
        return self._deny_stream if handler_call_details.method.endswith("/ScoreStream") else self._deny
