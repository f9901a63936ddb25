"""Proto messages <-> library objects for the injector (no physics, no rules here)."""

from __future__ import annotations

import numpy as np

from lenscal.errors import RequestError
from lenscal.injection.api import PriorDraw, RenderOptions
from lenscal.physics import PARAM_NAMES, ArcParams, PhysicsError
from lenscal_pb.injector.v1 import injector_pb2


def params_from_proto(messages: list[injector_pb2.ArcParams], *, field: str) -> ArcParams:
    if not messages:
        raise RequestError(field, "is empty; give one parameter set per arc")
    records = []
    for m in messages:
        record: dict[str, object] = {name: getattr(m, name) for name in PARAM_NAMES}
        if m.clumps:
            record["clumps"] = [[c.dx, c.dy, c.sigma, c.fraction] for c in m.clumps]
            record["clump_mix"] = m.clump_mix
        records.append(record)
    try:
        return ArcParams.from_records(records)
    except PhysicsError as exc:
        raise RequestError(field, str(exc)) from None


def options_from_proto(options: injector_pb2.RenderOptions) -> RenderOptions:
    """Unset (zero) fields keep the renderer's defaults."""
    return RenderOptions(
        oversample=int(options.oversample) or None,
        psf=options.psf or None,
        moffat_beta=float(options.moffat_beta) or None,
        poisson_gain=float(options.poisson_gain) or None,
        noise_seed=int(options.noise_seed) if options.HasField("noise_seed") else None,
        noise_cell=options.noise_cell or None,
    )


def draw_from_proto(draw: injector_pb2.PriorDraw) -> PriorDraw:
    psf_lists = [list(draw.psf_fwhm_g), list(draw.psf_fwhm_r), list(draw.psf_fwhm_z)]
    psf = None
    if any(psf_lists):
        if len({len(v) for v in psf_lists}) != 1:
            raise RequestError("prior_draw.psf_fwhm_g/r/z", "need one value per host in each band")
        psf = np.stack([np.asarray(v, dtype=np.float64) for v in psf_lists], axis=1)
    return PriorDraw(
        prior=draw.prior,
        seed=int(draw.seed),
        cell=draw.cell,
        theta_e=list(draw.theta_e),
        psf_fwhm=psf,
        condition_on_host=draw.condition_on_host,
    )
