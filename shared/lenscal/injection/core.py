"""The injector without a transport: the rules every injection follows whoever asks
(in-process or over gRPC). Parameters come explicit or from a built-in prior draw; noise
generators are keyed by (noise seed, cell, index); shard directories are opened once; the
device runs one batch at a time."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lenscal.data.shards import ShardReader
from lenscal.device import resolve_device
from lenscal.errors import NotFoundError, RequestError, ShardError
from lenscal.injection.api import InjectResult, PriorDraw, RenderOptions
from lenscal.injection.hosts import HostBatch, host_moments, hosts_from_shards
from lenscal.injection.inject import inject
from lenscal.injection.priors import PRIORS, sample_params
from lenscal.physics import ArcParams, PhysicsError, render_arcs
from lenscal.physics.params import example_arc
from lenscal.rng import noise_seed

#: Injections accepted in one call (one gRPC message).
MAX_PER_CALL = 4096


class InjectorCore:
    def __init__(self, device: str = "auto", chunk_size: int | None = None) -> None:
        self.device = resolve_device(device)
        # CPU chunks stay small (cache); a GPU takes thousands at once.
        self.chunk_size = chunk_size or (2048 if self.device.type == "cuda" else 32)
        self._device_lock = threading.Lock()  # one batch on the device at a time
        self._readers: dict[str, ShardReader] = {}

    def warm_up(self) -> None:
        render_arcs(ArcParams.from_records([example_arc()]), device=self.device)

    def render(
        self, params: ArcParams, *, size: int, options: RenderOptions, indices: Sequence[int] | None = None
    ) -> np.ndarray:
        _check_count(len(params), "params")
        spec = options.spec(size, chunk_size=self.chunk_size)
        cell = options.noise_cell or "render"
        keys = [noise_seed(spec.noise_seed, cell, i) for i in _indices(indices, len(params))]
        with self._device_lock:
            return render_arcs(params, spec, device=self.device, noise_keys=keys).cpu().numpy()

    def inject(
        self,
        hosts: HostBatch,
        *,
        params: ArcParams | None,
        draw: PriorDraw | None,
        options: RenderOptions,
        indices: Sequence[int] | None = None,
        return_arcs: bool = False,
    ) -> InjectResult:
        n = len(hosts.images)
        _check_count(n, "hosts")
        if hosts.images.ndim != 4 or hosts.images.shape[-1] != hosts.images.shape[-2]:
            raise RequestError("hosts", f"must be square (N, 3, H, H) cutouts, got {hosts.images.shape}")
        index = _indices(indices, n)
        if params is not None and draw is not None:
            raise RequestError("params/prior_draw", "give explicit params or a prior_draw, not both")
        if params is not None:
            if len(params) != n:
                raise RequestError("params", f"has {len(params)} entries for {n} hosts")
            cell = "explicit"
        elif draw is not None:
            host_shape = host_moments(hosts.images) if draw.condition_on_host else None
            params = params_for_draw(draw, index, hosts.psf_fwhm, host_shape)
            cell = draw.cell
        else:
            raise RequestError("params", "is empty and no prior_draw was given")
        spec = options.spec(int(hosts.images.shape[-1]), chunk_size=self.chunk_size)
        keys = [noise_seed(spec.noise_seed, options.noise_cell or cell, i) for i in index]
        with self._device_lock:
            result = inject(
                torch.from_numpy(np.array(hosts.images, dtype=np.float32)),
                params,
                spec,
                noise_keys=keys,
                device=self.device,
            )
        truth = result.truth
        truth.insert(0, "host_id", hosts.ids or [str(i) for i in index])  # default: the injection index
        if draw is not None and draw.condition_on_host:
            truth["host_q"], truth["host_phi"] = host_shape  # type: ignore[misc]
        arcs = result.arcs.cpu().numpy() if return_arcs else None
        return InjectResult(result.images.cpu().numpy(), truth, arcs)

    def shard_hosts(self, shard_dir: str, rows: Sequence[int]) -> HostBatch:
        if len(rows) == 0 or len(rows) > MAX_PER_CALL:
            raise RequestError("shard_hosts.rows", f"needs 1 to {MAX_PER_CALL} rows, got {len(rows)}")
        return hosts_from_shards(self._reader(shard_dir), rows, field="shard_hosts.rows")

    def _reader(self, shard_dir: str) -> ShardReader:
        if shard_dir not in self._readers:
            if not Path(shard_dir).is_dir():
                raise NotFoundError(f"shard_hosts.shard_dir: {shard_dir!r} is not a directory on the server")
            try:
                self._readers[shard_dir] = ShardReader(shard_dir)
            except ShardError as exc:
                raise RequestError("shard_hosts.shard_dir", str(exc)) from None
        return self._readers[shard_dir]


def params_for_draw(
    draw: PriorDraw,
    indices: Sequence[int],
    psf_from_hosts: np.ndarray | None,
    host_shape: tuple[np.ndarray, np.ndarray] | None = None,
) -> ArcParams:
    """One parameter set per host from a built-in prior (injection ``indices`` of the run);
    ``host_shape`` (q, phi) per host conditions the lens (IM2)."""
    count = len(indices)
    if draw.prior not in PRIORS:
        raise NotFoundError(
            f"prior_draw.prior: unknown prior {draw.prior!r}; built-in priors: {sorted(PRIORS)}"
        )
    theta = [float(draw.theta_e)] if isinstance(draw.theta_e, (int, float)) else list(draw.theta_e)
    if len(theta) == 1:
        theta *= count
    if len(theta) != count:
        raise RequestError(
            "prior_draw.theta_e", f"has {len(theta)} values for {count} hosts (give 1 or {count})"
        )
    if draw.psf_fwhm is not None:
        psf = np.asarray(draw.psf_fwhm, dtype=np.float64)
        if psf.shape != (count, 3):
            raise RequestError("prior_draw.psf_fwhm_g/r/z", f"each needs {count} values, one per host")
    elif psf_from_hosts is not None:
        psf = psf_from_hosts
    else:
        raise RequestError(
            "prior_draw.psf_fwhm_r", "is empty and hosts sent as bytes carry no PSF: give psf_fwhm_g/r/z"
        )
    try:
        return sample_params(
            PRIORS[draw.prior],
            theta,
            psf,
            seed=draw.seed,
            cell=draw.cell,
            indices=indices,
            host_q=None if host_shape is None else host_shape[0],
            host_phi=None if host_shape is None else host_shape[1],
        )
    except PhysicsError as exc:
        raise RequestError("prior_draw", str(exc)) from None


def _indices(indices: Sequence[int] | None, n: int) -> list[int]:
    index = list(range(n)) if indices is None or len(indices) == 0 else [int(i) for i in indices]
    if len(index) != n:
        raise RequestError("injection_indices", f"has {len(index)} entries for {n} hosts")
    return index


def _check_count(n: int, field: str) -> None:
    if n > MAX_PER_CALL:
        raise RequestError(field, f"{n} arcs exceed {MAX_PER_CALL} per request")
