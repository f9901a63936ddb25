"""The injector without a transport: the rules every injection follows whoever asks
(in-process or over gRPC). Parameters come explicit or from a built-in prior draw; noise
generators are keyed by (noise seed, cell, index); the device runs one chunk at a time.

Bounded work: every request is checked before any rendering, against the sub-pixel grid
(size x oversample <= 2048 per side) and a per-call budget of sub-pixels; work runs in
chunks and stops between chunks once ``should_stop()`` says the caller left or its
deadline passed. Shard directories (server side) are read only under configured roots,
resolved to their real paths, each opened once (a bounded cache); "outside the roots" and
"does not exist" give the same answer, so a caller learns nothing about the file system.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lenscal.data.shards import ShardReader
from lenscal.device import resolve_device
from lenscal.errors import NotFoundError, RequestError, ShardError
from lenscal.injection.api import InjectResult, PriorDraw, RenderOptions
from lenscal.injection.hosts import HostBatch, host_moments, hosts_from_shards
from lenscal.injection.inject import inject
from lenscal.injection.priors import PRIORS, named_prior, sample_params
from lenscal.physics import ArcParams, PhysicsError, RenderSpec, render_arcs
from lenscal.physics.params import example_arc
from lenscal.rng import noise_seed

#: Injections accepted in one call (one gRPC message).
MAX_PER_CALL = 4096
#: Sub-pixels per side of one stamp's render grid (size x oversample).
MAX_SERVICE_SUBGRID = 2048
#: Sub-pixels of ray shooting in one call: 4096 default stamps (101 px, 4x4) fit.
DEFAULT_WORK_BUDGET = MAX_PER_CALL * (101 * 4) ** 2
#: Shard directories kept open at once.
READER_CACHE = 16

StopCheck = Callable[[], bool]


class InjectorCore:
    def __init__(
        self,
        device: str = "auto",
        chunk_size: int | None = None,
        *,
        data_roots: Sequence[str | Path] | None = None,
        work_budget: int = DEFAULT_WORK_BUDGET,
    ) -> None:
        """``data_roots``: directories under which shard hosts may be read (None: anywhere,
        for in-process use; empty: nowhere)."""
        self.device = resolve_device(device)
        # CPU chunks stay small (cache); a GPU takes thousands at once.
        self.chunk_size = chunk_size or (2048 if self.device.type == "cuda" else 32)
        self.work_budget = work_budget
        self.data_roots = None if data_roots is None else [Path(r).resolve() for r in data_roots]
        self._device_lock = threading.Lock()  # one chunk on the device at a time
        self._readers: OrderedDict[Path, ShardReader] = OrderedDict()
        self._readers_lock = threading.Lock()

    def warm_up(self) -> None:
        render_arcs(ArcParams.from_records([example_arc()]), device=self.device)

    # --- work ----------------------------------------------------------------------------

    def render(
        self,
        params: ArcParams,
        *,
        size: int,
        options: RenderOptions,
        indices: Sequence[int] | None = None,
        should_stop: StopCheck | None = None,
    ) -> np.ndarray:
        spec = self._spec(options, size, len(params), "params")
        cell = options.noise_cell or "render"
        keys = [noise_seed(spec.noise_seed, cell, i) for i in _indices(indices, len(params))]
        parts = []
        for start in range(0, len(params), self.chunk_size):
            stop = min(start + self.chunk_size, len(params))
            with self._device(should_stop):
                arcs = render_arcs(
                    params.slice(start, stop), spec, device=self.device, noise_keys=keys[start:stop]
                )
            parts.append(arcs.cpu().numpy())
        return np.concatenate(parts)

    def inject(
        self,
        hosts: HostBatch,
        *,
        params: ArcParams | None,
        draw: PriorDraw | None,
        options: RenderOptions,
        indices: Sequence[int] | None = None,
        return_arcs: bool = False,
        should_stop: StopCheck | None = None,
    ) -> InjectResult:
        n = len(hosts.images)
        if hosts.images.ndim != 4 or hosts.images.shape[-1] != hosts.images.shape[-2]:
            raise RequestError("hosts", f"must be square (N, 3, H, H) cutouts, got {hosts.images.shape}")
        spec = self._spec(options, int(hosts.images.shape[-1]), n, "hosts")
        infinite = int(np.isinf(hosts.images).sum())
        if infinite:
            raise RequestError(
                "host_batch.data", f"holds {infinite} infinite value(s); only NaN (masked) is legal"
            )
        index = _indices(indices, n)
        if params is not None and draw is not None:
            raise RequestError("params/prior_draw", "give explicit params or a prior_draw, not both")
        host_shape = None
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
        keys = [noise_seed(spec.noise_seed, options.noise_cell or cell, i) for i in index]
        images, arcs, truths = [], [], []
        for start in range(0, n, self.chunk_size):
            stop = min(start + self.chunk_size, n)
            with self._device(should_stop):
                part = inject(
                    torch.from_numpy(np.array(hosts.images[start:stop], dtype=np.float32)),
                    params.slice(start, stop),
                    spec,
                    noise_keys=keys[start:stop],
                    device=self.device,
                )
            images.append(part.images.cpu().numpy())
            if return_arcs:
                arcs.append(part.arcs.cpu().numpy())
            truths.append(part.truth)
        truth = pd.concat(truths, ignore_index=True)
        truth.insert(0, "host_id", hosts.ids or [str(i) for i in index])  # default: the injection index
        if host_shape is not None:
            truth["host_q"], truth["host_phi"] = host_shape
        return InjectResult(np.concatenate(images), truth, np.concatenate(arcs) if return_arcs else None)

    def _spec(self, options: RenderOptions, size: int, count: int, field: str) -> RenderSpec:
        """The validated spec, with the request's work checked against the bounds."""
        if count > MAX_PER_CALL:
            raise RequestError(field, f"{count} arcs exceed {MAX_PER_CALL} per request")
        spec = options.spec(size, chunk_size=self.chunk_size)
        side = spec.size * spec.oversample
        if side > MAX_SERVICE_SUBGRID:
            raise RequestError(
                "options.oversample",
                f"size x oversample = {spec.size} x {spec.oversample} = {side} sub-pixels per side; "
                f"the limit is {MAX_SERVICE_SUBGRID}",
            )
        work = count * side * side
        if work > self.work_budget:
            fits = max(1, self.work_budget // (side * side))
            raise RequestError(
                field,
                f"{count} arcs of {side}x{side} sub-pixels ({work:,}) exceed the per-request budget of "
                f"{self.work_budget:,}: send at most {fits} per request",
            )
        return spec

    def _device(self, should_stop: StopCheck | None) -> _DeviceTurn:
        return _DeviceTurn(self._device_lock, should_stop)

    # --- shard hosts ---------------------------------------------------------------------

    def shard_hosts(self, shard_dir: str, rows: Sequence[int]) -> HostBatch:
        if len(rows) == 0 or len(rows) > MAX_PER_CALL:
            raise RequestError("shard_hosts.rows", f"needs 1 to {MAX_PER_CALL} rows, got {len(rows)}")
        return hosts_from_shards(self._reader(shard_dir), rows, field="shard_hosts.rows")

    def _reader(self, shard_dir: str) -> ShardReader:
        refusal = NotFoundError(
            f"shard_hosts.shard_dir: {shard_dir!r} is not a shard directory this server reads "
            "(no such directory, or outside its --data-root)"
        )
        try:
            real = Path(shard_dir).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            raise refusal from None
        if self.data_roots is not None and not any(real == r or r in real.parents for r in self.data_roots):
            raise refusal
        if not (real / "shards.json").is_file():
            raise refusal
        with self._readers_lock:
            reader = self._readers.get(real)
            if reader is None:
                try:
                    reader = ShardReader(real)
                except ShardError as exc:
                    raise RequestError(
                        "shard_hosts.shard_dir", str(exc).replace(str(real), shard_dir)
                    ) from None
                self._readers[real] = reader
                while len(self._readers) > READER_CACHE:
                    self._readers.popitem(last=False)
            self._readers.move_to_end(real)
            return reader


class _DeviceTurn:
    """Hold the device for one chunk; give up (CancelledError) once the caller stops caring,
    whether waiting for the device or between chunks."""

    def __init__(self, lock: threading.Lock, should_stop: StopCheck | None) -> None:
        self.lock, self.should_stop = lock, should_stop

    def __enter__(self) -> None:
        while True:
            if self.should_stop is not None and self.should_stop():
                raise concurrent.futures.CancelledError("the caller left or its deadline passed")
            if self.lock.acquire(timeout=0.05):
                return

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def params_for_draw(
    draw: PriorDraw,
    indices: Sequence[int],
    psf_from_hosts: np.ndarray | None,
    host_shape: tuple[np.ndarray, np.ndarray] | None = None,
) -> ArcParams:
    """One parameter set per host from a built-in prior (injection ``indices`` of the run);
    ``host_shape`` (q, phi) per host conditions the lens (IM2)."""
    count = len(indices)
    prior = named_prior(draw.prior)
    if prior is None:
        raise NotFoundError(
            f"prior_draw.prior: unknown prior {draw.prior!r}; built-in priors: {sorted(PRIORS)}, others by "
            "name in configs/injection"
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
            prior,
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
