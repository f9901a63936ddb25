"""The one injection interface. Grids, diagnostics, flows and commands render arcs and
inject them into hosts through an ``Injector``; two implementations behave the same:

- ``lenscal.injection.local.LocalInjector``: in-process (torch, CPU or CUDA);
- ``lenscal.rpc.injector_client.GrpcInjector``: the injector service over gRPC.

``lenscal.backends.open_injector`` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from lenscal.errors import RequestError
from lenscal.physics import ArcParams, RenderSpec
from lenscal.validation import request_error


class RenderOptions(BaseModel):
    """How arcs are rendered; unset fields keep lenscal.physics.RenderSpec's defaults.
    Units: moffat_beta dimensionless, poisson_gain e-/nmgy (None: noiseless).

    Poisson noise needs a caller-given ``noise_seed``: injection ``i`` draws its noise from
    the generator keyed by (noise_seed, cell, i), with cell ``noise_cell`` (default: the
    prior draw's cell, "explicit" for explicit parameters, "render" for arcs alone), so two
    calls never repeat noise unless they ask for the same seed and cell."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    oversample: int | None = None
    psf: str | None = None
    moffat_beta: float | None = None
    poisson_gain: float | None = None
    noise_seed: int | None = None
    noise_cell: str | None = None

    def spec(self, size: int, **fixed: Any) -> RenderSpec:
        """The validated RenderSpec for stamps of ``size`` px (``fixed``: server-side settings)."""
        if self.poisson_gain is not None and self.noise_seed is None:
            raise RequestError(
                "options.noise_seed",
                "is required with poisson_gain: give each run its own seed, so that calls do not "
                "repeat the same noise",
            )
        values = {"size": size, **self.model_dump(exclude_none=True, exclude={"noise_cell"}), **fixed}
        try:
            return RenderSpec.model_validate(values)
        except ValidationError as exc:
            raise request_error(exc, "options.") from None


@dataclass(frozen=True)
class ShardRows:
    """Hosts named by row of a shard directory (a path where the injector runs)."""

    shard_dir: str
    rows: Sequence[int]


@dataclass(frozen=True)
class PriorDraw:
    """Parameters drawn from a built-in prior, one set per host: injection ``index`` of cell
    ``cell`` in run ``seed`` (lenscal.rng.injection_rng). ``theta_e`` (arcsec): one value or
    one per host. ``psf_fwhm``: (N, 3) g, r, z FWHM (arcsec) per host; None takes them from
    the shard manifest's psfsize columns. ``condition_on_host``: IM2, q_lens and phi_lens
    follow each host's r-band second moments (lenscal.injection.hosts.host_moments)."""

    prior: str = "default"
    seed: int = 0
    cell: str = ""
    theta_e: float | Sequence[float] = 1.5
    psf_fwhm: np.ndarray | None = None
    condition_on_host: bool = False


@dataclass
class InjectResult:
    images: np.ndarray  # (N, 3, H, W) float32 nmgy: host + arc, in request order
    truth: pd.DataFrame  # one row per injection: host_id, parameters, magnification, S/N ...
    arcs: np.ndarray | None = None  # the arcs alone, when asked for


class Injector(Protocol):
    def render(
        self, params: ArcParams, *, size: int = 101, options: RenderOptions | None = None
    ) -> np.ndarray:
        """(N, 3, size, size) float32 arcs in nanomaggies; noise (if any) keyed by
        (options.noise_seed, "render", i)."""
        ...

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
        """Add one arc per host: explicit ``params`` or a prior ``draw`` (exactly one).
        ``indices``: each injection's index in the caller's run (keys its parameters and
        noise, so results do not depend on how a run is split); default 0..N-1."""
        ...

    def wait_ready(self, timeout_s: float = 60.0, connect_timeout_s: float | None = None) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Injector: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass
class InjectPiece:
    """One piece of an inject call (what one message carries)."""

    hosts: np.ndarray | ShardRows
    params: ArcParams | None
    draw: PriorDraw | None
    ids: list[str] | None
    indices: list[int]


def split_inject(
    hosts: np.ndarray | ShardRows,
    *,
    params: ArcParams | None,
    draw: PriorDraw | None,
    ids: Sequence[str] | None,
    indices: Sequence[int] | None,
    per_piece: int,
) -> list[InjectPiece]:
    """Cut an inject call into pieces of at most ``per_piece`` hosts. Each injection keeps
    its index in the whole call, so the pieces give exactly what one call would."""
    n = len(hosts.rows) if isinstance(hosts, ShardRows) else len(hosts)
    index = list(range(n)) if indices is None or len(indices) == 0 else [int(i) for i in indices]
    pieces = []
    for start in range(0, n, per_piece):
        stop = min(start + per_piece, n)
        piece_hosts: np.ndarray | ShardRows = (
            ShardRows(hosts.shard_dir, list(hosts.rows)[start:stop])
            if isinstance(hosts, ShardRows)
            else hosts[start:stop]
        )
        piece_draw = draw
        if draw is not None:
            theta = draw.theta_e if isinstance(draw.theta_e, (int, float)) else list(draw.theta_e)[start:stop]
            psf = None if draw.psf_fwhm is None else np.asarray(draw.psf_fwhm)[start:stop]
            piece_draw = PriorDraw(draw.prior, draw.seed, draw.cell, theta, psf, draw.condition_on_host)
        pieces.append(
            InjectPiece(
                hosts=piece_hosts,
                params=None if params is None else params.slice(start, stop),
                draw=piece_draw,
                ids=None if ids is None else list(ids)[start:stop],
                indices=index[start:stop],
            )
        )
    return pieces


def concat_results(results: Sequence[InjectResult]) -> InjectResult:
    """Join the results of the pieces of one call, in order."""
    if not results:
        raise ValueError("no results to join")
    arcs = [r.arcs for r in results]
    return InjectResult(
        images=np.concatenate([r.images for r in results]),
        truth=pd.concat([r.truth for r in results], ignore_index=True),
        arcs=None if any(a is None for a in arcs) else np.concatenate(arcs),  # type: ignore[arg-type]
    )
