"""Host galaxies for injection: their shapes, their PSFs, and the two injection models.

- IM1: hosts are random validation-split negatives.
- IM2: LRG-like validation negatives (Tractor type DEV or SER, red colours, bright in z);
  q_lens is conditioned on the host's axis ratio and phi_lens set to its position angle.

Shape convention. Tractor's ``shape_e1, shape_e2`` give ``e = hypot(e1, e2)``,
``q = b/a = (1 - e) / (1 + e)`` and a position angle ``theta = atan2(e2, e1) / 2`` which
lenscal takes as East of North. In a cutout-service image (+x = increasing column = west,
+y = increasing row = north) the major axis then points along ``(-sin theta, cos theta)``,
i.e. at ``phi = theta + pi/2`` counter-clockwise from +x: that is the angle lenscal's
renderer uses for ``phi_lens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lenscal.data.shards import ShardReader
from lenscal.errors import ManifestError, RequestError

#: PSF FWHM scale factors from r when a manifest lacks psfsize_g / psfsize_z (team's setup).
PSF_SCALE_FROM_R = {"g": 1.05, "r": 1.0, "z": 0.94}
#: IM2 LRG-like cuts (AB mag from Tractor fluxes): simple colour and brightness cuts.
LRG_TYPES = ("DEV", "SER")
LRG_CUTS = {"g_minus_r_min": 1.3, "r_minus_z_min": 0.9, "mag_z_max": 20.4}


def host_shape(e1: np.ndarray, e2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, phi) per host: axis ratio b/a and major-axis angle (rad, CCW from +x, [0, pi))."""
    e1a, e2a = np.asarray(e1, dtype=np.float64), np.asarray(e2, dtype=np.float64)
    e = np.clip(np.hypot(e1a, e2a), 0.0, 0.999999)
    q = (1.0 - e) / (1.0 + e)
    theta = 0.5 * np.arctan2(e2a, e1a)
    return q, np.mod(theta + np.pi / 2.0, np.pi)


def host_psf_fwhm(hosts: pd.DataFrame) -> np.ndarray:
    """(N, 3) g, r, z PSF FWHM in arcsec: psfsize_g/r/z, or psfsize_r x (1.05, 1, 0.94)."""
    if "psfsize_r" not in hosts.columns:
        raise ManifestError("hosts need column 'psfsize_r' (PSF FWHM, arcsec) to render arcs")
    r = hosts["psfsize_r"].to_numpy(dtype=np.float64)
    columns = []
    for band in "grz":
        name = f"psfsize_{band}"
        value = hosts[name].to_numpy(dtype=np.float64) if name in hosts.columns else np.full_like(r, np.nan)
        columns.append(np.where(np.isfinite(value) & (value > 0), value, r * PSF_SCALE_FROM_R[band]))
    return np.stack(columns, axis=1)


@dataclass
class HostBatch:
    """Host cutouts ready for injection."""

    images: np.ndarray  # (N, 3, H, W) float32 nmgy
    ids: list[str]  # galaxy_id per host ("" when unknown)
    psf_fwhm: np.ndarray | None  # (N, 3) g, r, z FWHM in arcsec, when the manifest has them


def hosts_from_shards(reader: ShardReader, rows: Sequence[int], *, field: str = "rows") -> HostBatch:
    """Rows of a shard directory as hosts: cutouts, galaxy ids, per-band PSF FWHM."""
    picked_rows = np.asarray(list(rows), dtype=np.int64)
    if picked_rows.size == 0:
        raise RequestError(field, "is empty; name at least one row")
    if picked_rows.min() < 0 or picked_rows.max() >= len(reader):
        bad = int(picked_rows[(picked_rows < 0) | (picked_rows >= len(reader))][0])
        raise RequestError(field, f"row {bad} out of range for {len(reader)} cutouts")
    picked = reader.manifest().iloc[picked_rows]
    psf = host_psf_fwhm(picked) if "psfsize_r" in picked.columns else None
    return HostBatch(reader.read(picked_rows), picked["galaxy_id"].astype(str).tolist(), psf)


def im1_pool(manifest: pd.DataFrame) -> pd.DataFrame:
    """Validation-split negatives."""
    _need(manifest, ("split", "label"), "IM1")
    return manifest[(manifest["split"] == "val") & (manifest["label"] == 0)]


def im2_pool(manifest: pd.DataFrame) -> pd.DataFrame:
    """LRG-like validation-split negatives, with host q and phi columns added."""
    _need(manifest, ("split", "label", "type", "flux_g", "flux_r", "flux_z", "shape_e1", "shape_e2"), "IM2")
    pool = im1_pool(manifest)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = {b: 22.5 - 2.5 * np.log10(pool[f"flux_{b}"].to_numpy(dtype=np.float64)) for b in "grz"}
    keep = (
        pool["type"].astype(str).str.strip().isin(LRG_TYPES).to_numpy()
        & (mag["g"] - mag["r"] > LRG_CUTS["g_minus_r_min"])
        & (mag["r"] - mag["z"] > LRG_CUTS["r_minus_z_min"])
        & (mag["z"] < LRG_CUTS["mag_z_max"])
    )
    chosen = pool[keep].copy()
    chosen["host_q"], chosen["host_phi"] = host_shape(
        chosen["shape_e1"].to_numpy(), chosen["shape_e2"].to_numpy()
    )
    return chosen


HOST_MODELS = {"IM1": im1_pool, "IM2": im2_pool}


def host_pool(manifest: pd.DataFrame, model: str) -> pd.DataFrame:
    if model not in HOST_MODELS:
        raise ManifestError(f"unknown injection model {model!r}; known: {sorted(HOST_MODELS)}")
    return HOST_MODELS[model](manifest)


def _need(df: pd.DataFrame, columns: tuple[str, ...], model: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ManifestError(f"{model} host selection needs manifest column(s) {missing}")
