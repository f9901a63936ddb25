"""Client for the injector service: arrays and DataFrames in, messages of a sensible size
on the wire, arrays and DataFrames out."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import pandas as pd

from lenscal.clients.health import wait_serving
from lenscal.injector.v1 import injector_pb2, injector_pb2_grpc
from lenscal.physics import PARAM_NAMES, ArcParams
from lenscal.serving.arrays import decode_batch, encode_batch
from lenscal.serving.server import CHANNEL_OPTIONS

DTYPE_CODES = {np.dtype(np.float32): injector_pb2.FLOAT32, np.dtype(np.float16): injector_pb2.FLOAT16}


class InjectorClient:
    def __init__(self, endpoint: str, *, timeout_s: float = 120.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self.stub = injector_pb2_grpc.InjectorStub(self.channel)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the server's health check says SERVING."""
        wait_serving(self.channel, self.endpoint, time.monotonic() + timeout_s, "injector")

    def render(
        self,
        params: ArcParams | Sequence[Mapping[str, float]],
        *,
        size: int = 101,
        options: Mapping[str, Any] | None = None,
        dtype: Any = np.float32,
        per_message: int = 256,
    ) -> np.ndarray:
        """(N, 3, size, size) arcs, rendered on the server."""
        records = params.records() if isinstance(params, ArcParams) else [dict(p) for p in params]
        parts = []
        for start in range(0, len(records), per_message):
            request = injector_pb2.RenderRequest(
                params=[_arc_message(r) for r in records[start : start + per_message]],
                height=size,
                width=size,
                options=injector_pb2.RenderOptions(**(options or {})),
                return_dtype=DTYPE_CODES[np.dtype(dtype)],
            )
            reply = self.stub.Render(request, timeout=self.timeout_s)
            parts.append(np.array(decode_batch(reply.arcs, field="arcs")[0]))
        return np.concatenate(parts)

    def inject(
        self,
        hosts: np.ndarray | None = None,
        *,
        shard_dir: str | None = None,
        rows: Sequence[int] | None = None,
        params: ArcParams | Sequence[Mapping[str, float]] | None = None,
        prior: str | None = None,
        seed: int = 0,
        cell: str = "",
        theta_e: float | Sequence[float] | None = None,
        psf_fwhm: np.ndarray | None = None,
        indices: Sequence[int] | None = None,
        ids: Sequence[str] | None = None,
        options: Mapping[str, Any] | None = None,
        dtype: Any = np.float32,
        per_message: int = 32,
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Inject arcs into hosts given as an (N, 3, H, W) array or as rows of a server-side
        shard directory, with explicit params or drawn from a built-in prior."""
        if (hosts is None) == (shard_dir is None):
            raise ValueError("give hosts (an array) or shard_dir + rows")
        n = len(hosts) if hosts is not None else len(rows or [])
        records = None
        if params is not None:
            records = params.records() if isinstance(params, ArcParams) else [dict(p) for p in params]
        images, truths = [], []
        for start in range(0, n, per_message):
            stop = min(start + per_message, n)
            request = injector_pb2.InjectRequest(
                options=injector_pb2.RenderOptions(**(options or {})),
                return_dtype=DTYPE_CODES[np.dtype(dtype)],
            )
            if hosts is not None:
                request.host_batch.CopyFrom(
                    encode_batch(
                        injector_pb2.ImageBatch, hosts[start:stop], ids=list(ids[start:stop]) if ids else None
                    )
                )
            else:
                request.shard_hosts.shard_dir = str(shard_dir)
                request.shard_hosts.rows.extend(int(r) for r in (rows or [])[start:stop])
            if records is not None:
                request.params.extend(_arc_message(r) for r in records[start:stop])
                request.injection_indices.extend(
                    int(i) for i in (indices if indices is not None else range(n))[start:stop]
                )
            elif prior is not None:
                draw = request.prior_draw
                draw.prior, draw.seed, draw.cell = prior, seed, cell
                draw.indices.extend(
                    int(i) for i in (indices if indices is not None else range(n))[start:stop]
                )
                thetas = [theta_e] * n if isinstance(theta_e, (int, float)) else list(theta_e or [])
                draw.theta_e.extend(float(t) for t in thetas[start:stop])
                if psf_fwhm is not None:
                    block = np.asarray(psf_fwhm, dtype=np.float64)[start:stop]
                    draw.psf_fwhm_g.extend(block[:, 0].tolist())
                    draw.psf_fwhm_r.extend(block[:, 1].tolist())
                    draw.psf_fwhm_z.extend(block[:, 2].tolist())
            reply = self.stub.Inject(request, timeout=self.timeout_s)
            images.append(np.array(decode_batch(reply.injected, field="injected")[0]))
            truths.append(pd.read_parquet(io.BytesIO(reply.truth_parquet)))
        return np.concatenate(images), pd.concat(truths, ignore_index=True)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> InjectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _arc_message(record: Mapping[str, Any]) -> injector_pb2.ArcParams:
    missing = [name for name in PARAM_NAMES if name not in record]
    if missing:
        raise ValueError(f"arc parameters lack {missing}")
    return injector_pb2.ArcParams(**{name: float(record[name]) for name in PARAM_NAMES})
