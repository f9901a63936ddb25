"""The Injector servicer: decode, call lenscal.physics / lenscal.injection, encode."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import torch
from prometheus_client import Counter, Histogram

from lenscal.data.shards import ShardReader
from lenscal.errors import ShardError
from lenscal.injection.hosts import host_psf_fwhm
from lenscal.injection.inject import inject
from lenscal.injector.v1 import injector_pb2, injector_pb2_grpc
from lenscal.physics import render_arcs
from lenscal.physics.render import noise_key
from lenscal.serving.arrays import decode_batch, encode_batch, wire_dtype
from lenscal.serving.errors import NotFoundError, RequestError, rpc_errors
from lenscal.survey import BANDS, CUTOUT_SIZE
from lenscal_injector.convert import params_from_prior, params_from_proto, spec_from_options

SERVICE_NAME = "lenscal.injector.v1.Injector"
MAX_PER_REQUEST = 4096
REQUESTS = Counter("lenscal_injector_requests_total", "RPCs handled", ["rpc", "outcome"])
INJECTIONS = Counter("lenscal_injector_arcs_total", "Arcs rendered")
LATENCY = Histogram("lenscal_injector_seconds", "RPC wall time", ["rpc"])


class InjectorServicer(injector_pb2_grpc.InjectorServicer):
    def __init__(self, device: str = "cpu", chunk_size: int | None = None) -> None:
        self.device = torch.device(device)
        # CPU chunks stay small (cache); a GPU takes thousands at once.
        self.chunk_size = chunk_size or (2048 if self.device.type == "cuda" else 32)
        self._device_lock = threading.Lock()  # one batch on the device at a time
        self._shards: dict[str, ShardReader] = {}

    def warm_up(self) -> None:
        from lenscal.physics import ArcParams

        one = dict(
            theta_e=1.0,
            q_lens=0.8,
            phi_lens=0.0,
            lens_x=0.0,
            lens_y=0.0,
            gamma1=0.0,
            gamma2=0.0,
            src_x=0.1,
            src_y=0.0,
            r_e=0.2,
            n_sersic=1.0,
            q_src=0.8,
            phi_src=0.0,
            mag_g=23.0,
            mag_r=22.0,
            mag_z=21.5,
            psf_fwhm_g=1.2,
            psf_fwhm_r=1.1,
            psf_fwhm_z=1.0,
        )
        render_arcs(ArcParams.from_records([one]), device=self.device)

    @rpc_errors
    def Render(
        self, request: injector_pb2.RenderRequest, context: grpc.ServicerContext
    ) -> injector_pb2.RenderResponse:
        started = time.perf_counter()
        size = int(request.height or CUTOUT_SIZE)
        if request.width and request.width != size:
            raise RequestError("height/width", f"must be equal, got {request.height}x{request.width}")
        if len(request.params) > MAX_PER_REQUEST:
            raise RequestError("params", f"{len(request.params)} arcs exceed {MAX_PER_REQUEST} per request")
        out_dtype = wire_dtype(int(request.return_dtype), field="return_dtype")
        params = params_from_proto(list(request.params), field="params")
        spec = spec_from_options(request.options, size).model_copy(update={"chunk_size": self.chunk_size})
        keys = [noise_key(spec.noise_seed, "render", i) for i in range(len(params))]
        with self._device_lock:
            arcs = render_arcs(params, spec, device=self.device, noise_keys=keys).cpu().numpy()
        INJECTIONS.inc(len(params))
        self._record("Render", started)
        return injector_pb2.RenderResponse(arcs=encode_batch(injector_pb2.ImageBatch, arcs, dtype=out_dtype))

    @rpc_errors
    def Inject(
        self, request: injector_pb2.InjectRequest, context: grpc.ServicerContext
    ) -> injector_pb2.InjectResponse:
        started = time.perf_counter()
        out_dtype = wire_dtype(int(request.return_dtype), field="return_dtype")
        hosts, ids, psf = self._hosts(request)
        if request.params and request.HasField("prior_draw"):
            raise RequestError("params/prior_draw", "give explicit params or a prior_draw, not both")
        if request.params:
            params = params_from_proto(list(request.params), field="params")
            if len(params) != len(hosts):
                raise RequestError("params", f"has {len(params)} entries for {len(hosts)} hosts")
            cell, indices = "explicit", list(request.injection_indices) or list(range(len(hosts)))
            if len(indices) != len(hosts):
                raise RequestError("injection_indices", f"has {len(indices)} entries for {len(hosts)} hosts")
        elif request.HasField("prior_draw"):
            params = params_from_prior(request.prior_draw, len(hosts), psf)
            cell = request.prior_draw.cell
            indices = list(request.prior_draw.indices) or list(range(len(hosts)))
        else:
            raise RequestError("params", "is empty and no prior_draw was given")
        spec = spec_from_options(request.options, int(hosts.shape[-1])).model_copy(
            update={"chunk_size": self.chunk_size}
        )
        keys = [noise_key(spec.noise_seed, cell, int(i)) for i in indices]
        with self._device_lock:
            result = inject(
                torch.from_numpy(np.array(hosts, dtype=np.float32)),
                params,
                spec,
                noise_keys=keys,
                device=self.device,
            )
        truth = result.truth
        truth.insert(0, "host_id", ids or [str(i) for i in range(len(hosts))])
        buffer = io.BytesIO()
        truth.to_parquet(buffer, index=False)
        INJECTIONS.inc(len(hosts))
        response = injector_pb2.InjectResponse(
            injected=encode_batch(
                injector_pb2.ImageBatch, result.images.cpu().numpy(), dtype=out_dtype, ids=ids
            ),
            truth_parquet=buffer.getvalue(),
        )
        if request.return_arcs:
            response.arcs.CopyFrom(
                encode_batch(injector_pb2.ImageBatch, result.arcs.cpu().numpy(), dtype=out_dtype)
            )
        self._record("Inject", started)
        return response

    def _hosts(self, request: injector_pb2.InjectRequest) -> tuple[np.ndarray, list[str], np.ndarray | None]:
        which = request.WhichOneof("hosts")
        if which == "host_batch":
            hosts, ids = decode_batch(
                request.host_batch, field="host_batch", channels=len(BANDS), max_count=MAX_PER_REQUEST
            )
            if hosts.shape[-1] != hosts.shape[-2]:
                raise RequestError("host_batch.height/width", "cutouts must be square")
            return hosts, ids, None
        if which == "shard_hosts":
            reader = self._reader(request.shard_hosts.shard_dir)
            rows = np.asarray(list(request.shard_hosts.rows), dtype=np.int64)
            if rows.size == 0 or rows.size > MAX_PER_REQUEST:
                raise RequestError("shard_hosts.rows", f"needs 1 to {MAX_PER_REQUEST} rows, got {rows.size}")
            if rows.max() >= len(reader):
                raise RequestError(
                    "shard_hosts.rows", f"row {int(rows.max())} out of range for {len(reader)} cutouts"
                )
            manifest = reader.manifest()
            picked = manifest.iloc[rows]
            psf = host_psf_fwhm(picked) if "psfsize_r" in picked.columns else None
            return reader.read(rows), picked["galaxy_id"].astype(str).tolist(), psf
        raise RequestError(
            "hosts", "give host_batch (cutout bytes) or shard_hosts (rows of a shard directory)"
        )

    def _reader(self, shard_dir: str) -> ShardReader:
        if shard_dir not in self._shards:
            if not Path(shard_dir).is_dir():
                raise NotFoundError(f"shard_hosts.shard_dir: {shard_dir!r} is not a directory on the server")
            try:
                self._shards[shard_dir] = ShardReader(shard_dir)
            except ShardError as exc:
                raise RequestError("shard_hosts.shard_dir", str(exc)) from None
        return self._shards[shard_dir]

    @staticmethod
    def _record(rpc: str, started: float) -> None:
        LATENCY.labels(rpc).observe(time.perf_counter() - started)
        REQUESTS.labels(rpc, "ok").inc()
