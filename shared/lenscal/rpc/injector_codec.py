"""The Injector's messages <-> library objects, both directions of each message in one place
(the client encodes what the servicer decodes, and back); tests/test_codecs.py round-trips
every pair. No physics and no rules here."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lenscal.errors import RequestError
from lenscal.injection.api import PriorDraw, RenderOptions
from lenscal.physics import PARAM_NAMES, ArcParams, PhysicsError
from lenscal_pb.injector.v1 import injector_pb2


def params_to_proto(params: ArcParams) -> list[injector_pb2.ArcParams]:
    messages = [
        injector_pb2.ArcParams(**{name: float(record[name]) for name in PARAM_NAMES})  # type: ignore[arg-type]
        for record in params.records()
    ]
    if params.clumps is not None:
        for message, row in zip(messages, params.clump_records(), strict=True):
            message.clumps.extend(
                injector_pb2.Clump(dx=c[0], dy=c[1], sigma=c[2], fraction=c[3]) for c in row["clumps"]
            )
            message.clump_mix = row["clump_mix"]
    return messages


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


def options_to_proto(options: RenderOptions | None) -> injector_pb2.RenderOptions:
    return injector_pb2.RenderOptions(**(options or RenderOptions()).model_dump(exclude_none=True))


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


def draw_to_proto(message: injector_pb2.PriorDraw, draw: PriorDraw, indices: Sequence[int]) -> None:
    """Fill ``message`` (a request's prior_draw) with ``draw`` for injections ``indices``."""
    message.prior, message.seed, message.cell = draw.prior, draw.seed, draw.cell
    message.condition_on_host = draw.condition_on_host
    message.indices.extend(int(i) for i in indices)
    thetas = [draw.theta_e] if isinstance(draw.theta_e, (int, float)) else list(draw.theta_e)
    message.theta_e.extend(float(t) for t in thetas)
    if draw.psf_fwhm is not None:
        block = np.asarray(draw.psf_fwhm, dtype=np.float64)
        message.psf_fwhm_g.extend(block[:, 0].tolist())
        message.psf_fwhm_r.extend(block[:, 1].tolist())
        message.psf_fwhm_z.extend(block[:, 2].tolist())


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


def truth_to_bytes(truth: pd.DataFrame) -> bytes:
    """The truth table of an Inject reply (one row per injection) as Parquet bytes."""
    buffer = io.BytesIO()
    truth.to_parquet(buffer, index=False)
    return buffer.getvalue()


def truth_from_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))
