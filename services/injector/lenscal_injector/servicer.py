"""The Injector servicer: a thin gRPC adapter over lenscal.injection.core.InjectorCore. It
admits a bounded number of calls, refuses a reply that could not be sent before computing
it, and lets the core stop between chunks once the caller left or its deadline passed."""

from __future__ import annotations

import time

import grpc
from prometheus_client import Counter, Histogram

from lenscal.errors import RequestError
from lenscal.injection.core import MAX_PER_CALL, InjectorCore
from lenscal.injection.hosts import HostBatch
from lenscal.rpc.arrays import decode_batch, encode_batch, wire_dtype
from lenscal.rpc.injector_codec import draw_from_proto, options_from_proto, params_from_proto, truth_to_bytes
from lenscal.rpc.server import MAX_REPLY_BYTES, Admission
from lenscal.rpc.status import rpc_errors
from lenscal.survey import BANDS, CUTOUT_SIZE
from lenscal_pb.injector.v1 import injector_pb2, injector_pb2_grpc

REQUESTS = Counter("lenscal_injector_requests_total", "RPCs handled", ["rpc", "outcome"])
INJECTIONS = Counter("lenscal_injector_arcs_total", "Arcs rendered")
LATENCY = Histogram("lenscal_injector_seconds", "RPC wall time", ["rpc"])
#: Truth-table bytes per injection, generously (Parquet of ~40 float columns).
TRUTH_BYTES_PER_ROW = 1024


class InjectorServicer(injector_pb2_grpc.InjectorServicer):
    def __init__(self, core: InjectorCore, admission: Admission) -> None:
        self.core = core
        self.admission = admission

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
        _check_reply("params", len(request.params), size, out_dtype.itemsize, images=1, truth=False)
        with self.admission.enter("requests"):
            arcs = self.core.render(
                params_from_proto(list(request.params), field="params"),
                size=size,
                options=options_from_proto(request.options),
                indices=list(request.indices) or None,
                should_stop=lambda: not context.is_active(),
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
        with self.admission.enter("requests"):
            hosts = self._hosts(request)
            n, size = len(hosts.images), int(hosts.images.shape[-1])
            _check_reply(
                "hosts", n, size, out_dtype.itemsize, images=2 if request.return_arcs else 1, truth=True
            )
            explicit = bool(request.params)
            result = self.core.inject(
                hosts,
                params=params_from_proto(list(request.params), field="params") if explicit else None,
                draw=draw_from_proto(request.prior_draw) if request.HasField("prior_draw") else None,
                options=options_from_proto(request.options),
                indices=(list(request.injection_indices) if explicit else list(request.prior_draw.indices))
                or None,
                return_arcs=request.return_arcs,
                should_stop=lambda: not context.is_active(),
            )
        INJECTIONS.inc(len(result.images))
        response = injector_pb2.InjectResponse(
            injected=encode_batch(result.images, dtype=out_dtype, ids=hosts.ids or None),
            truth_parquet=truth_to_bytes(result.truth),
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


def _check_reply(field: str, count: int, size: int, itemsize: int, *, images: int, truth: bool) -> None:
    """Refuse, before any work, a reply larger than a gRPC message may be."""
    reply = count * images * len(BANDS) * size * size * itemsize + (
        count * TRUTH_BYTES_PER_ROW if truth else 0
    )
    if reply > MAX_REPLY_BYTES:
        per_arc = reply / max(count, 1)
        raise RequestError(
            field,
            f"the reply would be {reply / 2**20:.0f} MiB, over the {MAX_REPLY_BYTES / 2**20:.0f} MiB message "
            f"limit: send at most {int(MAX_REPLY_BYTES // per_arc)} arcs of {size}x{size} px per request "
            "(or ask for FLOAT16)",
        )


def _record(rpc: str, started: float) -> None:
    LATENCY.labels(rpc).observe(time.perf_counter() - started)
    REQUESTS.labels(rpc, "ok").inc()
