"""A Tractor-like catalogue for the mock survey. Every object draws from its own generator
(lenscal.rng.mock_rng), so object i is the same whatever n is.

Ranges (DR10-like): r-band PSF FWHM 0.8-2.0" (g x1.02-1.12, z x0.86-0.98); 5-sigma
point-source depths g 24.1-24.7, r 23.5-24.1, z 22.75-23.35 AB, which with the correlated
coadd noise of lenscal.mock.images give outer-ring robust sigma inside the ranges measured
on real DR10 cutouts (docs/science.md). Positives sit on LRG-like hosts (DEV, red, bright);
negatives are 85% random galaxies (pool N1) and 15% hard confusers (pool N2: rings,
spirals, mergers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lenscal.rng import mock_rng
from lenscal.survey import psfdepth_from_m5

N1_TYPES = (("SER", 0.2), ("DEV", 0.25), ("REX", 0.3), ("EXP", 0.25))
CONFUSERS = ("ring", "spiral", "merger")
#: Every mock object's galaxy_id starts with this: how figures know to badge mock data.
MOCK_ID_PREFIX = "mock_"


def is_mock(galaxy_ids: pd.Series) -> bool:
    """Whether any of ``galaxy_ids`` is a mock-survey object."""
    return bool(galaxy_ids.astype(str).str.startswith(MOCK_ID_PREFIX).any())


DEPTH_M5 = {"g": (24.1, 24.7), "r": (23.5, 24.1), "z": (22.75, 23.35)}


def draw_catalog(
    n: int, seed: int, positive_fraction: float, confuser_fraction: float = 0.15
) -> pd.DataFrame:
    rows = [_draw_object(i, seed, positive_fraction, confuser_fraction) for i in range(n)]
    return pd.DataFrame(rows)


def _draw_object(i: int, seed: int, positive_fraction: float, confuser_fraction: float) -> dict[str, Any]:
    rng = mock_rng(seed, i)
    u = rng.uniform()
    if u < positive_fraction:
        pool, category, kind = "pos", None, "DEV"
    elif u < positive_fraction + (1 - positive_fraction) * confuser_fraction:
        pool, category = "N2", CONFUSERS[int(rng.integers(len(CONFUSERS)))]
        kind = {"ring": "EXP", "spiral": "EXP", "merger": "SER"}[category]
    else:
        pool, category = "N1", None
        kind = str(rng.choice([t for t, _ in N1_TYPES], p=[p for _, p in N1_TYPES]))
    early = kind in ("DEV", "SER")
    if pool == "pos":
        mag_r = rng.uniform(18.3, 20.2)
        g_r, r_z = rng.normal(1.55, 0.12), rng.normal(1.05, 0.08)
    else:
        mag_r = rng.uniform(17.5, 21.5)
        g_r, r_z = (
            (rng.normal(1.45, 0.2), rng.normal(0.95, 0.12))
            if early
            else (rng.normal(0.7, 0.2), rng.normal(0.5, 0.15))
        )
    shape_r = {"DEV": (0.8, 3.0), "SER": (0.5, 2.5), "EXP": (0.6, 2.5), "REX": (0.3, 0.8)}[kind]
    r_e = rng.uniform(*shape_r)
    q = 1.0 if kind == "REX" else rng.uniform(0.35, 1.0)
    theta = rng.uniform(0.0, np.pi)  # position angle, East of North
    e = (1 - q) / (1 + q)
    sersic = {"DEV": 4.0, "EXP": 1.0, "REX": 1.0}.get(kind, rng.uniform(1.0, 6.0))
    psf_r = float(np.clip(rng.lognormal(np.log(1.25), 0.2), 0.8, 2.0))
    m5 = {b: rng.uniform(*DEPTH_M5[b]) for b in "grz"}
    mags = {"g": mag_r + g_r, "r": mag_r, "z": mag_r - r_z}
    nobs = {b: int(1 + rng.poisson(2.5)) for b in "grz"}
    ra = rng.uniform(148.0, 152.0)
    dec = float(np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-1.0)), np.sin(np.radians(3.0))))))
    return {
        "galaxy_id": f"{MOCK_ID_PREFIX}{seed}_{i:06d}",
        "ra": ra,
        "dec": dec,
        "type": kind,
        "type_bin": kind,
        "flux_g": 10 ** (-0.4 * (mags["g"] - 22.5)),
        "flux_r": 10 ** (-0.4 * (mags["r"] - 22.5)),
        "flux_z": 10 ** (-0.4 * (mags["z"] - 22.5)),
        "shape_r": r_e,
        "shape_e1": e * np.cos(2 * theta),
        "shape_e2": e * np.sin(2 * theta),
        "sersic": sersic,
        "psfsize_g": psf_r * rng.uniform(1.02, 1.12),
        "psfsize_r": psf_r,
        "psfsize_z": psf_r * rng.uniform(0.86, 0.98),
        "psfdepth_g": psfdepth_from_m5(m5["g"]),
        "psfdepth_r": psfdepth_from_m5(m5["r"]),
        "psfdepth_z": psfdepth_from_m5(m5["z"]),
        "ebv": rng.uniform(0.01, 0.08),
        "nobs_g": nobs["g"],
        "nobs_r": nobs["r"],
        "nobs_z": nobs["z"],
        "nobs_z_bin": "1" if nobs["z"] == 1 else ("2" if nobs["z"] == 2 else "3+"),
        "pool": pool,
        "confuser_category": category,
        "label": int(pool == "pos"),
    }
