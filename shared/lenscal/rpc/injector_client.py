"""GrpcInjector: the Injector interface over the injector service. Calls are cut into
messages of a sensible size (each injection keeps its index in the whole call, so the
result does not depend on the cut); arrays and tables come back as arrays and tables."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from lenscal.injection.api import (
    InjectResult,
    PriorDraw,
    RenderOptions,
    ShardRows,
    concat_results,
    split_inject,
)
from lenscal.physics import ArcParams
from lenscal.rpc.arrays import decode_batch, encode_batch, wire_code
from lenscal.rpc.auth import token_metadata
from lenscal.rpc.health import wait_serving
from lenscal.rpc.injector_codec import draw_to_proto, options_to_proto, params_to_proto, truth_from_bytes
from lenscal.rpc.server import CHANNEL_OPTIONS
from lenscal.rpc.status import as_lenscal_errors
from lenscal_pb.injector.v1 import injector_pb2, injector_pb2_grpc


class GrpcInjector:
    def __init__(
        self,
        endpoint: str,
        *,
        timeout_s: float = 120.0,
        dtype: Any = np.float32,
        per_message: int = 32,
        token: str | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.return_dtype = wire_code(dtype)
        self.per_message = per_message
        self._metadata = token_metadata(token)
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.secure_channel(endpoint, credentials, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self.stub = injector_pb2_grpc.InjectorStub(self.channel)

    def wait_ready(self, timeout_s: float = 60.0, connect_timeout_s: float | None = None) -> None:
        """Block until the server's health check says SERVING."""
        wait_serving(self.channel, self.endpoint, time.monotonic() + timeout_s, "injector", connect_timeout_s)

    def render(
        self, params: ArcParams, *, size: int = 101, options: RenderOptions | None = None
    ) -> np.ndarray:
        per_message = max(self.per_message, 256)
        parts = []
        for start in range(0, len(params), per_message):
            request = injector_pb2.RenderRequest(
                params=params_to_proto(params.slice(start, start + per_message)),
                height=size,
                width=size,
                options=options_to_proto(options),
                return_dtype=self.return_dtype,
                indices=range(start, min(start + per_message, len(params))),
            )
            with as_lenscal_errors():
                reply = self.stub.Render(request, timeout=self.timeout_s, metadata=self._metadata)
            parts.append(np.array(decode_batch(reply.arcs, field="arcs")[0]))
        return np.concatenate(parts)

    def inject(
        self,
        hosts: np.ndarray | ShardRows,
        *,
        params: ArcParams | None = None,
        draw: PriorDraw | None = None,
        ids: Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        options: RenderOptions | None = None,
        return_arcs: bool = False,
    ) -> InjectResult:
        results = []
        for piece in split_inject(
            hosts, params=params, draw=draw, ids=ids, indices=indices, per_piece=self.per_message
        ):
            request = injector_pb2.InjectRequest(
                options=options_to_proto(options), return_dtype=self.return_dtype, return_arcs=return_arcs
            )
            if isinstance(piece.hosts, ShardRows):
                request.shard_hosts.shard_dir = str(piece.hosts.shard_dir)
                request.shard_hosts.rows.extend(int(r) for r in piece.hosts.rows)
            else:
                request.host_batch.CopyFrom(encode_batch(piece.hosts, ids=piece.ids))
            if piece.params is not None:
                request.params.extend(params_to_proto(piece.params))
                request.injection_indices.extend(piece.indices)
            if piece.draw is not None:
                draw_to_proto(request.prior_draw, piece.draw, piece.indices)
            with as_lenscal_errors():
                reply = self.stub.Inject(request, timeout=self.timeout_s, metadata=self._metadata)
            results.append(
                InjectResult(
                    images=np.array(decode_batch(reply.injected, field="injected")[0]),
                    truth=truth_from_bytes(reply.truth_parquet),
                    arcs=np.array(decode_batch(reply.arcs, field="arcs")[0]) if return_arcs else None,
                )
            )
        return concat_results(results)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrpcInjector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
