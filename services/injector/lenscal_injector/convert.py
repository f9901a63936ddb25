"""Proto messages <-> library objects for the injector (no physics here)."""

from __future__ import annotations

import numpy as np

from lenscal.injection.priors import PRIORS, sample_params
from lenscal.injector.v1 import injector_pb2
from lenscal.physics import PARAM_NAMES, ArcParams, PhysicsError, RenderSpec
from lenscal.serving.errors import NotFoundError, RequestError


def params_from_proto(messages: list[injector_pb2.ArcParams], *, field: str) -> ArcParams:
    if not messages:
        raise RequestError(field, "is empty; give one parameter set per arc")
    records = [{name: getattr(m, name) for name in PARAM_NAMES} for m in messages]
    try:
        return ArcParams.from_records(records)
    except PhysicsError as exc:
        raise RequestError(field, str(exc)) from None


def spec_from_options(options: injector_pb2.RenderOptions, size: int) -> RenderSpec:
    values: dict[str, object] = {"size": size, "noise_seed": int(options.noise_seed)}
    if options.oversample:
        values["oversample"] = int(options.oversample)
    if options.psf:
        values["psf"] = options.psf
    if options.moffat_beta:
        values["moffat_beta"] = float(options.moffat_beta)
    if options.poisson_gain:
        values["poisson_gain"] = float(options.poisson_gain)
    try:
        return RenderSpec.model_validate(values)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ("?",), "msg": str(exc)}
        raise RequestError(f"options.{'.'.join(map(str, first['loc']))}", first["msg"]) from None


def params_from_prior(
    draw: injector_pb2.PriorDraw, count: int, psf_from_hosts: np.ndarray | None
) -> ArcParams:
    """One parameter set per host from a built-in prior."""
    if draw.prior not in PRIORS:
        raise NotFoundError(
            f"prior_draw.prior: unknown prior {draw.prior!r}; built-in priors: {sorted(PRIORS)}"
        )
    theta = list(draw.theta_e)
    if len(theta) == 1:
        theta *= count
    if len(theta) != count:
        raise RequestError(
            "prior_draw.theta_e", f"has {len(theta)} values for {count} hosts (give 1 or {count})"
        )
    psf_lists = [list(draw.psf_fwhm_g), list(draw.psf_fwhm_r), list(draw.psf_fwhm_z)]
    if any(psf_lists):
        if any(len(v) != count for v in psf_lists):
            raise RequestError("prior_draw.psf_fwhm_g/r/z", f"each needs {count} values, one per host")
        psf = np.stack([np.asarray(v, dtype=np.float64) for v in psf_lists], axis=1)
    elif psf_from_hosts is not None:
        psf = psf_from_hosts
    else:
        raise RequestError(
            "prior_draw.psf_fwhm_r", "is empty and hosts sent as bytes carry no PSF: give psf_fwhm_g/r/z"
        )
    indices = list(draw.indices) or list(range(count))
    if len(indices) != count:
        raise RequestError("prior_draw.indices", f"has {len(indices)} values for {count} hosts")
    try:
        return sample_params(
            PRIORS[draw.prior], theta, psf, seed=int(draw.seed), cell=draw.cell, indices=indices
        )
    except PhysicsError as exc:
        raise RequestError("prior_draw", str(exc)) from None
