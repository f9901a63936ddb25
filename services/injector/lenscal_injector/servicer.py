"""The Injector servicer: a thin gRPC adapter over lenscal.injection.core.InjectorCore."""

from __future__ import annotations

import io
import time

import grpc
from prometheus_client import Counter, Histogram

from lenscal.errors import RequestError
from lenscal.injection.core import MAX_PER_CALL, InjectorCore
from lenscal.injection.hosts import HostBatch
from lenscal.rpc.arrays import decode_batch, encode_batch, wire_dtype
from lenscal.rpc.status import rpc_errors
from lenscal.survey import BANDS, CUTOUT_SIZE
from lenscal_injector.convert import draw_from_proto, options_from_proto, params_from_proto
from lenscal_pb.injector.v1 import injector_pb2, injector_pb2_grpc

SERVICE_NAME = "lenscal.injector.v1.Injector"
REQUESTS = Counter("lenscal_injector_requests_total", "RPCs handled", ["rpc", "outcome"])
INJECTIONS = Counter("lenscal_injector_arcs_total", "Arcs rendered")
LATENCY = Histogram("lenscal_injector_seconds", "RPC wall time", ["rpc"])


class InjectorServicer(injector_pb2_grpc.InjectorServicer):
    def __init__(self, core: InjectorCore) -> None:
        self.core = core

    @rpc_errors
    def Render(
        self, request: injector_pb2.RenderRequest, context: grpc.ServicerContext
    ) -> injector_pb2.RenderResponse:
        started = time.perf_counter()
        size = int(request.height or CUTOUT_SIZE)
        if request.width and request.width != size:
            raise RequestError("height/width", f"must be equal, got {request.height}x{request.width}")
        if len(request.params) > MAX_PER_CALL:
            raise RequestError("params", f"{len(request.params)} arcs exceed {MAX_PER_CALL} per request")
        out_dtype = wire_dtype(int(request.return_dtype), field="return_dtype")
        arcs = self.core.render(
            params_from_proto(list(request.params), field="params"),
            size=size,
            options=options_from_proto(request.options),
            indices=list(request.indices) or None,
        )
        INJECTIONS.inc(len(arcs))
        _record("Render", started)
        return injector_pb2.RenderResponse(arcs=encode_batch(arcs, dtype=out_dtype))

    @rpc_errors
    def Inject(
        self, request: injector_pb2.InjectRequest, context: grpc.ServicerContext
    ) -> injector_pb2.InjectResponse:
        started = time.perf_counter()
        out_dtype = wire_dtype(int(request.return_dtype), field="return_dtype")
        hosts = self._hosts(request)
        has_draw = request.HasField("prior_draw")
        explicit = bool(request.params)
        result = self.core.inject(
            hosts,
            params=params_from_proto(list(request.params), field="params") if explicit else None,
            draw=draw_from_proto(request.prior_draw) if has_draw else None,
            options=options_from_proto(request.options),
            indices=(list(request.injection_indices) if explicit else list(request.prior_draw.indices))
            or None,
            return_arcs=request.return_arcs,
        )
        buffer = io.BytesIO()
        result.truth.to_parquet(buffer, index=False)
        INJECTIONS.inc(len(result.images))
        response = injector_pb2.InjectResponse(
            injected=encode_batch(result.images, dtype=out_dtype, ids=hosts.ids or None),
            truth_parquet=buffer.getvalue(),
        )
        if result.arcs is not None:
            response.arcs.CopyFrom(encode_batch(result.arcs, dtype=out_dtype))
        _record("Inject", started)
        return response

    def _hosts(self, request: injector_pb2.InjectRequest) -> HostBatch:
        which = request.WhichOneof("hosts")
        if which == "host_batch":
            images, ids = decode_batch(
                request.host_batch, field="host_batch", channels=len(BANDS), max_count=MAX_PER_CALL
            )
            if images.shape[-1] != images.shape[-2]:
                raise RequestError("host_batch.height/width", "cutouts must be square")
            return HostBatch(images, ids, None)
        if which == "shard_hosts":
            return self.core.shard_hosts(request.shard_hosts.shard_dir, list(request.shard_hosts.rows))
        raise RequestError(
            "hosts", "give host_batch (cutout bytes) or shard_hosts (rows of a shard directory)"
        )


def _record(rpc: str, started: float) -> None:
    LATENCY.labels(rpc).observe(time.perf_counter() - started)
    REQUESTS.labels(rpc, "ok").inc()
