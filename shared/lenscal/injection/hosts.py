"""Host galaxies for injection: their shapes, their PSFs, and the two injection models
(as the team defined them, injection_model_2/host_selection.py and host_matching.py).

- IM1: hosts are random validation-split negatives.
- IM2: deflector-like validation negatives: Tractor morphology DEV or SER (``type_bin``, the
  team's column, or ``type``), ``quality_ok`` when the manifest has it. Their q_lens and
  phi_lens are conditioned on the host's own light: axis ratio and major axis from the
  flux-weighted second moments of the r-band cutout (``host_moments``), measured at
  injection time from the pixels, so a 16-column team manifest is enough.

Shape convention of Tractor columns (used by the mock survey). Tractor's ``shape_e1,
shape_e2`` give ``e = hypot(e1, e2)``,
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
#: IM2 deflector-like morphologies (Tractor types).
LRG_TYPES = ("DEV", "SER")
#: Second moments: aperture radius (px), axis-ratio floor, background clip percentiles.
MOMENT_APERTURE_PX = 40
MOMENT_Q_MIN = 0.2
MOMENT_CLIP_PERCENT = 99.5


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
    listed = [int(r) for r in rows]
    if not listed:
        raise RequestError(field, "is empty; name at least one row")
    bad = next((r for r in listed if not 0 <= r < len(reader)), None)  # before any int64 conversion
    if bad is not None:
        raise RequestError(field, f"row {bad} out of range for {len(reader)} cutouts")
    picked_rows = np.asarray(listed, dtype=np.int64)
    picked = reader.manifest().iloc[picked_rows]
    psf = host_psf_fwhm(picked) if "psfsize_r" in picked.columns else None
    return HostBatch(reader.read(picked_rows), picked["galaxy_id"].astype(str).tolist(), psf)


def im1_pool(manifest: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """Negatives of a split (validation by default)."""
    _need(manifest, ("split", "label"), "IM1")
    return manifest[(manifest["split"] == split) & (manifest["label"] == 0)]


def im2_pool(manifest: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """Deflector-like (DEV/SER) negatives of a split."""
    type_col = "type_bin" if "type_bin" in manifest.columns else "type"
    _need(manifest, ("split", "label", type_col), "IM2")
    pool = im1_pool(manifest, split)
    keep = pool[type_col].astype(str).str.strip().isin(LRG_TYPES)
    if "quality_ok" in pool.columns:
        keep &= pool["quality_ok"].fillna(False).astype(bool)
    return pool[keep]


def host_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, phi) per host from the flux-weighted second moments of its r-band light.

    ``images``: (N, 3, H, W) nanomaggies. Per host: subtract the image median, clip at the
    0.5 / 99.5 percentiles, NaN -> 0; keep positive flux within 40 px (or the half-size) of
    the centre; refine the centroid; q = sqrt(minor / major eigenvalue), floored at 0.2;
    phi = direction of the major eigenvector (rad, counter-clockwise from +x = columns,
    +y = rows; in [0, pi)). A host with no positive flux gets q = 1, phi = 0.
    """
    r_band = np.asarray(images, dtype=np.float64)[:, 1]
    n, h, w = r_band.shape
    with np.errstate(all="ignore"):
        centred = r_band - np.nanmedian(r_band.reshape(n, -1), axis=1)[:, None, None]
        low = np.nanpercentile(centred.reshape(n, -1), 100.0 - MOMENT_CLIP_PERCENT, axis=1)
        high = np.nanpercentile(centred.reshape(n, -1), MOMENT_CLIP_PERCENT, axis=1)
    light = np.clip(centred, low[:, None, None], high[:, None, None])
    light = np.where(np.isfinite(light), light, 0.0)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = rows - (h - 1) / 2.0, cols - (w - 1) / 2.0
    aperture = np.hypot(x, y) <= min(MOMENT_APERTURE_PX, min(h, w) // 2)
    weight = np.where(aperture, np.maximum(light, 0.0), 0.0)
    total = weight.sum(axis=(1, 2))
    usable = np.isfinite(total) & (total > 0)
    safe = np.where(usable, total, 1.0)[:, None, None]
    mx = (weight * x).sum(axis=(1, 2), keepdims=True) / safe
    my = (weight * y).sum(axis=(1, 2), keepdims=True) / safe
    dx, dy = x - mx, y - my
    mxx = (weight * dx * dx).sum(axis=(1, 2)) / safe[:, 0, 0]
    myy = (weight * dy * dy).sum(axis=(1, 2)) / safe[:, 0, 0]
    mxy = (weight * dx * dy).sum(axis=(1, 2)) / safe[:, 0, 0]
    values, vectors = np.linalg.eigh(np.stack([np.stack([mxx, mxy], -1), np.stack([mxy, myy], -1)], -2))
    major, minor = values[:, 1], np.maximum(values[:, 0], 1e-12)
    usable &= major > 1e-12
    q = np.clip(np.sqrt(minor / np.where(usable, major, 1.0)), MOMENT_Q_MIN, 1.0)
    phi = np.mod(np.arctan2(vectors[:, 1, 1], vectors[:, 0, 1]), np.pi)
    return np.where(usable, q, 1.0), np.where(usable, phi, 0.0)


HOST_MODELS = {"IM1": im1_pool, "IM2": im2_pool}


def host_pool(manifest: pd.DataFrame, model: str, split: str = "val") -> pd.DataFrame:
    if model not in HOST_MODELS:
        raise ManifestError(f"unknown injection model {model!r}; known: {sorted(HOST_MODELS)}")
    return HOST_MODELS[model](manifest, split)


def _need(df: pd.DataFrame, columns: tuple[str, ...], model: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ManifestError(f"{model} host selection needs manifest column(s) {missing}")
