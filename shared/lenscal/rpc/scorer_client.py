"""GrpcScorer: the Scorer interface over the scorer service. Cutouts go out as float16
bytes (half the wire) in messages of ~64 cutouts, over several channels, round-robin
across replica endpoints, with a deadline on every call.

A job finishes when replicas drain or die: Score is idempotent, so a message that fails
with UNAVAILABLE, CANCELLED (a server going away mid-call) or RESOURCE_EXHAUSTED is sent
again, on another replica when there is one (a replica that answered UNAVAILABLE or
CANCELLED is avoided for a few seconds), after the server's retry hint when overloaded.
A stream that breaks has its unanswered messages resent the same way."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from lenscal.preprocess_spec import PreprocessOverride
from lenscal.rpc.auth import token_metadata
from lenscal.rpc.health import wait_serving
from lenscal.rpc.scorer_codec import model_info_from_proto, score_request, score_result
from lenscal.rpc.server import CHANNEL_OPTIONS
from lenscal.rpc.status import RETRY_AFTER_KEY, RETRYABLE, as_lenscal_errors
from lenscal.scoring.api import ModelInfo, Progress, ScoreResult
from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

#: Seconds a replica that answered UNAVAILABLE or CANCELLED is passed over.
AVOID_S = 5.0


class GrpcScorer:
    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        per_message: int = 64,
        wire_dtype: str = "float16",
        timeout_s: float = 120.0,
        retries: int = 6,
        backoff_s: float = 0.05,
        channels_per_endpoint: int = 2,
        concurrency: int = 4,
        streaming: bool = False,
        token: str | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("give at least one endpoint")
        if wire_dtype not in ("float16", "float32"):
            raise ValueError("wire_dtype must be float16 or float32")
        self.per_message, self.wire_dtype, self.timeout_s = per_message, wire_dtype, timeout_s
        self.retries, self.backoff_s = retries, backoff_s
        self.concurrency, self.streaming = concurrency, streaming
        self._metadata = token_metadata(token)
        self._channels: list[grpc.Channel] = []
        for endpoint in self.endpoints:
            for _ in range(channels_per_endpoint):
                # Distinct channel args make gRPC open separate connections.
                options = [*CHANNEL_OPTIONS, ("grpc.channel_id", len(self._channels))]
                if root_certificates is not None:
                    creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
                    self._channels.append(grpc.secure_channel(endpoint, creds, options=options))
                else:
                    self._channels.append(grpc.insecure_channel(endpoint, options=options))
        per_endpoint = channels_per_endpoint
        self._stubs = [scorer_pb2_grpc.ScorerStub(c) for c in self._channels]
        self._endpoint_of = [i // per_endpoint for i in range(len(self._stubs))]
        self._avoid_until = [0.0] * len(self.endpoints)
        self._turn = itertools.count()
        self._lock = threading.Lock()

    # --- plumbing ------------------------------------------------------------------------

    def _stub(self) -> tuple[int, scorer_pb2_grpc.ScorerStub]:
        """(endpoint index, stub): round-robin over channels of replicas not being avoided."""
        with self._lock:
            now = time.monotonic()
            for _ in range(len(self._stubs)):
                k = next(self._turn) % len(self._stubs)
                if self._avoid_until[self._endpoint_of[k]] <= now:
                    return self._endpoint_of[k], self._stubs[k]
            k = next(self._turn) % len(self._stubs)  # every replica avoided: try anyway
            return self._endpoint_of[k], self._stubs[k]

    def _avoid(self, endpoint: int, seconds: float = AVOID_S) -> None:
        with self._lock:
            self._avoid_until[endpoint] = time.monotonic() + seconds

    def _call(self, request: scorer_pb2.ScoreRequest) -> scorer_pb2.ScoreResponse:
        delay = self.backoff_s
        attempts = self.retries + len(self.endpoints)  # a dead replica costs one attempt each
        for attempt in range(attempts):
            endpoint, stub = self._stub()
            try:
                return stub.Score(request, timeout=self.timeout_s, metadata=self._metadata)
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt == attempts - 1:
                    raise
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self._avoid(endpoint)  # draining or gone: go elsewhere at once
                    if len(self.endpoints) > 1:
                        continue
                hint = dict(error.trailing_metadata() or ()).get(RETRY_AFTER_KEY)
                time.sleep(max(delay, float(hint)) if hint else delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def wait_ready(self, timeout_s: float = 120.0, connect_timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        per_endpoint = max(1, len(self._channels) // len(self.endpoints))
        for channel, endpoint in zip(self._channels[::per_endpoint], self.endpoints, strict=False):
            wait_serving(channel, endpoint, deadline, "scorer", connect_timeout_s)

    def model_info(self, model: str = "") -> list[ModelInfo]:
        with as_lenscal_errors():
            reply = self._stub()[1].GetModelInfo(
                scorer_pb2.ModelInfoRequest(model=model), timeout=self.timeout_s, metadata=self._metadata
            )
        return [model_info_from_proto(m) for m in reply.models]

    def _requests(
        self,
        images: np.ndarray,
        *,
        model: str,
        preprocessed: bool,
        override: PreprocessOverride | None,
        return_embeddings: bool,
        ids: Sequence[str] | None,
    ) -> Iterator[scorer_pb2.ScoreRequest]:
        for tag, start in enumerate(range(0, len(images), self.per_message)):
            block = images[start : start + self.per_message]
            yield score_request(
                block,
                model=model,
                preprocessed=preprocessed,
                override=override,
                return_embeddings=return_embeddings,
                ids=ids[start : start + len(block)] if ids is not None else None,
                tag=tag,
                float32=self.wire_dtype == "float32",
            )

    # --- scoring -------------------------------------------------------------------------

    def score(
        self,
        cutouts: np.ndarray,
        *,
        model: str = "",
        preprocessed: bool = False,
        override: PreprocessOverride | None = None,
        return_embeddings: bool = False,
        ids: Sequence[str] | None = None,
        progress: Progress | None = None,
        concurrency: int | None = None,
        streaming: bool | None = None,
    ) -> ScoreResult:
        """Score (N, 3, 101, 101) cutouts (raw nanomaggies unless ``preprocessed``);
        ``concurrency`` / ``streaming`` override the client's defaults for this call."""
        lanes = concurrency if concurrency is not None else self.concurrency
        requests = list(
            self._requests(
                cutouts,
                model=model,
                preprocessed=preprocessed,
                override=override,
                return_embeddings=return_embeddings,
                ids=ids,
            )
        )
        with as_lenscal_errors():
            if streaming if streaming is not None else self.streaming:
                replies = self._stream(requests, lanes, progress)
            else:
                with ThreadPoolExecutor(max_workers=max(1, lanes)) as pool:
                    replies = []
                    for reply in pool.map(self._call, requests):
                        replies.append(reply)
                        if progress is not None:
                            progress(len(reply.logits))
        return score_result(replies, return_embeddings)

    def _stream(self, requests: list[scorer_pb2.ScoreRequest], lanes: int, progress: Any) -> list[Any]:
        """Split the messages over ``lanes`` bidirectional streams (one per channel); a lane
        whose stream breaks resends its unanswered messages as retried unary calls."""
        split = [requests[i :: max(1, lanes)] for i in range(max(1, lanes))]
        results: dict[int, Any] = {}

        def run(lane: list[scorer_pb2.ScoreRequest]) -> None:
            if not lane:
                return
            endpoint, stub = self._stub()
            try:
                for reply in stub.ScoreStream(iter(lane), timeout=self.timeout_s, metadata=self._metadata):
                    results[reply.request_tag] = reply
                    if progress is not None:
                        progress(len(reply.logits))
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE:
                    raise
                self._avoid(endpoint)
            for request in lane:
                if request.request_tag not in results:
                    reply = self._call(request)
                    results[reply.request_tag] = reply
                    if progress is not None:
                        progress(len(reply.logits))

        with ThreadPoolExecutor(max_workers=len(split)) as pool:
            list(pool.map(run, split))
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> GrpcScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
