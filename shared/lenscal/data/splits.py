"""Spatial train/val(/test) splits on real HEALPix pixels.

Every object takes the split of its HEALPix pixel (nside 128, NESTED ordering, ICRS
ra/dec in degrees), so positives and negatives that share sky share a split, and no
pixel can span two splits. A pixel's split comes from SHA-256 of ``(seed, nside, pixel)``
(never Python's salted ``hash()``), so it is the same in every process and on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lenscal.errors import SplitError
from lenscal.rng import split_uniform

#: Scheme name -> ((split, fraction), ...); fractions sum to 1.
SCHEMES: dict[str, tuple[tuple[str, float], ...]] = {
    "70_30": (("train", 0.70), ("val", 0.30)),
    "70_15_15": (("train", 0.70), ("val", 0.15), ("test", 0.15)),
}
DEFAULT_NSIDE = 128


def healpix_index(
    ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray, nside: int = DEFAULT_NSIDE
) -> np.ndarray:
    """NESTED HEALPix pixel of each (ra, dec) [deg, ICRS] at ``nside`` (astropy-healpix)."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    ra_a = np.asarray(ra, dtype=np.float64)
    dec_a = np.asarray(dec, dtype=np.float64)
    if ra_a.shape != dec_a.shape:
        raise SplitError(f"ra and dec differ in shape: {ra_a.shape} vs {dec_a.shape}")
    bad = ~np.isfinite(ra_a) | ~np.isfinite(dec_a) | (np.abs(dec_a) > 90)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SplitError(
            f"row {i}: ra={float(ra_a.flat[i])!r}, dec={float(dec_a.flat[i])!r} is not a valid sky position"
        )
    if nside < 1 or nside & (nside - 1):
        raise SplitError(f"nside must be a power of two, got {nside}")
    hp = HEALPix(nside=nside, order="nested")
    return np.asarray(hp.lonlat_to_healpix(np.mod(ra_a, 360.0) * u.deg, dec_a * u.deg), dtype=np.int64)


def pixel_uniform(pixels: np.ndarray, seed: int, nside: int = DEFAULT_NSIDE) -> np.ndarray:
    """A stable pseudo-uniform number in [0, 1) per pixel, from SHA-256 of (seed, nside, pixel)."""
    unique, inverse = np.unique(np.asarray(pixels, dtype=np.int64), return_inverse=True)
    values = np.empty(unique.size, dtype=np.float64)
    for k, pix in enumerate(unique.tolist()):
        values[k] = split_uniform(seed, nside, pix)
    return values[inverse.reshape(-1)]


def assign_splits(
    ra: Sequence[float] | np.ndarray,
    dec: Sequence[float] | np.ndarray,
    scheme: str,
    nside: int = DEFAULT_NSIDE,
    seed: int = 42,
) -> np.ndarray:
    """Split name ("train", "val", "test") per object, decided by its HEALPix pixel."""
    bounds = _scheme(scheme)
    u = pixel_uniform(healpix_index(ra, dec, nside), seed, nside)
    names = np.array([name for name, _ in bounds], dtype=object)
    edges = np.cumsum([frac for _, frac in bounds])[:-1]
    return names[np.searchsorted(edges, u, side="right")]


def _scheme(scheme: str) -> tuple[tuple[str, float], ...]:
    if scheme not in SCHEMES:
        raise SplitError(f"unknown split scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    return SCHEMES[scheme]


@dataclass
class SplitCheck:
    """Result of check_splits: leaks are pixels whose objects carry more than one split."""

    n_objects: int
    n_pixels: int
    fractions: dict[str, float]
    leaked_pixels: dict[int, list[str]] = field(default_factory=dict)
    healpix_mismatches: int = 0  # rows whose stored healpix_128 disagrees with ra/dec

    @property
    def ok(self) -> bool:
        return not self.leaked_pixels and self.healpix_mismatches == 0

    def summary(self) -> str:
        lines = [
            f"{self.n_objects} objects in {self.n_pixels} HEALPix pixels; fractions: "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.fractions.items()))
        ]
        if self.healpix_mismatches:
            lines.append(
                f"FAIL: {self.healpix_mismatches} rows have a healpix_128 that disagrees with ra/dec"
            )
        if self.leaked_pixels:
            lines.append(f"FAIL: {len(self.leaked_pixels)} pixels are shared between splits, e.g.:")
            for pix, splits in list(self.leaked_pixels.items())[:10]:
                lines.append(f"  pixel {pix}: {', '.join(splits)}")
        else:
            lines.append("OK: no pixel is shared between splits")
        return "\n".join(lines)


def check_splits(df: pd.DataFrame, *, nside: int = DEFAULT_NSIDE) -> SplitCheck:
    """Recompute each object's pixel from ra/dec (never trusting a stored column) and report
    pixels that hold more than one split, plus rows whose stored ``healpix_128`` is wrong."""
    for col in ("ra", "dec", "split"):
        if col not in df.columns:
            raise SplitError(f"split check needs column {col!r}")
    labelled = df[df["split"].notna()]
    pixels = healpix_index(labelled["ra"].to_numpy(), labelled["dec"].to_numpy(), nside)
    mismatches = 0
    if f"healpix_{nside}" in labelled.columns:
        stored = labelled[f"healpix_{nside}"].to_numpy()
        mismatches = int((stored != pixels).sum())
    per_pixel = pd.DataFrame({"pix": pixels, "split": labelled["split"].astype(str).to_numpy()})
    groups = per_pixel.groupby("pix")["split"].unique()
    leaked = {int(str(p)): sorted(s) for p, s in groups.items() if len(s) > 1}
    fractions = per_pixel["split"].value_counts(normalize=True).to_dict()
    return SplitCheck(
        n_objects=len(labelled),
        n_pixels=int(groups.size),
        fractions={str(k): float(v) for k, v in fractions.items()},
        leaked_pixels=leaked,
        healpix_mismatches=mismatches,
    )
