"""Client for the scorer: cutouts go out as float16 bytes (half the wire) in messages of
~64 cutouts, over several channels, round-robin across replica endpoints, with retries and
backoff on UNAVAILABLE / RESOURCE_EXHAUSTED and a deadline on every call."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from lenscal.clients.health import wait_serving
from lenscal.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from lenscal.serving.arrays import encode_batch
from lenscal.serving.server import CHANNEL_OPTIONS
from lenscal.survey import FLOAT16_MAX

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass
class ScoreResult:
    logits: np.ndarray
    probabilities: np.ndarray
    embeddings: np.ndarray | None
    model_id: str


class ScorerClient:
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
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
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
        self._stubs = [scorer_pb2_grpc.ScorerStub(c) for c in self._channels]
        self._turn = itertools.count()
        self._lock = threading.Lock()

    # --- plumbing ------------------------------------------------------------------------

    def _stub(self) -> scorer_pb2_grpc.ScorerStub:
        with self._lock:
            return self._stubs[next(self._turn) % len(self._stubs)]

    def _call(self, request: scorer_pb2.ScoreRequest) -> scorer_pb2.ScoreResponse:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return self._stub().Score(request, timeout=self.timeout_s, metadata=self._metadata)
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt == self.retries:
                    raise
                hint = dict(error.trailing_metadata() or ()).get("retry-after-s")
                time.sleep(max(delay, float(hint)) if hint else delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for channel, endpoint in zip(
            self._channels[:: max(1, len(self._channels) // len(self.endpoints))],
            self.endpoints,
            strict=False,
        ):
            wait_serving(channel, endpoint, deadline, "scorer")

    def model_info(self, model: str = "") -> list[scorer_pb2.ModelInfo]:
        reply = self._stub().GetModelInfo(
            scorer_pb2.ModelInfoRequest(model=model), timeout=self.timeout_s, metadata=self._metadata
        )
        return list(reply.models)

    def _requests(
        self,
        images: np.ndarray,
        *,
        model: str,
        preprocessed: bool,
        override: Mapping[str, float] | None,
        return_embeddings: bool,
        ids: Sequence[str] | None,
    ) -> Iterator[scorer_pb2.ScoreRequest]:
        for tag, start in enumerate(range(0, len(images), self.per_message)):
            block = images[start : start + self.per_message]
            dtype: Any = np.float16
            finite = block[np.isfinite(block)]
            if self.wire_dtype == "float32" or (finite.size and np.abs(finite).max() > FLOAT16_MAX):
                dtype = np.float32  # float16 would overflow: send this message as float32
            batch = encode_batch(
                scorer_pb2.CutoutBatch,
                block,
                dtype=dtype,
                ids=list(ids[start : start + len(block)]) if ids is not None else None,
            )
            request = scorer_pb2.ScoreRequest(
                model=model,
                batch=batch,
                preprocessed=preprocessed,
                return_embeddings=return_embeddings,
                request_tag=tag,
            )
            for key, value in (override or {}).items():
                setattr(request.preprocess_override, key, float(value))
            yield request

    # --- scoring -------------------------------------------------------------------------

    def score(
        self,
        images: np.ndarray,
        *,
        model: str = "",
        preprocessed: bool = False,
        override: Mapping[str, float] | None = None,
        return_embeddings: bool = False,
        ids: Sequence[str] | None = None,
        concurrency: int = 4,
        streaming: bool = False,
        progress: Any = None,
    ) -> ScoreResult:
        """Score (N, 3, 101, 101) cutouts (raw nanomaggies unless ``preprocessed``)."""
        requests = list(
            self._requests(
                images,
                model=model,
                preprocessed=preprocessed,
                override=override,
                return_embeddings=return_embeddings,
                ids=ids,
            )
        )
        if streaming:
            replies = self._stream(requests, concurrency, progress)
        else:
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                replies = []
                for reply in pool.map(self._call, requests):
                    replies.append(reply)
                    if progress is not None:
                        progress(len(reply.logits))
        logits = (
            np.concatenate([np.asarray(r.logits, dtype=np.float32) for r in replies])
            if replies
            else np.empty(0)
        )
        probabilities = (
            np.concatenate([np.asarray(r.probabilities, dtype=np.float32) for r in replies])
            if replies
            else np.empty(0)
        )
        embeddings = None
        if return_embeddings and replies:
            embeddings = np.concatenate(
                [np.frombuffer(r.embeddings, dtype="<f4").reshape(-1, r.embedding_dim) for r in replies]
            )
        return ScoreResult(logits, probabilities, embeddings, replies[0].model_id if replies else "")

    def _stream(self, requests: list[scorer_pb2.ScoreRequest], concurrency: int, progress: Any) -> list[Any]:
        """Split the messages over ``concurrency`` bidirectional streams (one per channel)."""
        lanes = [requests[i :: max(1, concurrency)] for i in range(max(1, concurrency))]
        results: dict[int, Any] = {}

        def run(lane: list[scorer_pb2.ScoreRequest]) -> None:
            if not lane:
                return
            for reply in self._stub().ScoreStream(
                iter(lane), timeout=self.timeout_s, metadata=self._metadata
            ):
                results[reply.request_tag] = reply
                if progress is not None:
                    progress(len(reply.logits))

        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            list(pool.map(run, lanes))
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> ScorerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
