"""DESI Legacy Surveys DR10 conventions shared by every module.

Pixels are nanomaggies (nmgy); AB magnitude ``m = 22.5 - 2.5 log10(flux / nmgy)``.
"""

import math
from collections.abc import Sequence
from typing import Final

import numpy as np

#: Bands in the order lenscal stores them (channel axis of a CHW cutout).
BANDS: Final[tuple[str, ...]] = ("g", "r", "z")
#: Cutout side in pixels.
CUTOUT_SIZE: Final[int] = 101
#: Shape of one cutout inside lenscal: (bands, rows, columns), channel-first.
CUTOUT_SHAPE: Final[tuple[int, int, int]] = (len(BANDS), CUTOUT_SIZE, CUTOUT_SIZE)
#: DR10 pixel scale, arcsec per pixel.
PIXEL_SCALE_ARCSEC: Final[float] = 0.262
#: AB zero point of the nanomaggy: flux 1 nmgy is magnitude 22.5.
NANOMAGGY_ZEROPOINT_AB: Final[float] = 22.5
#: Largest finite float16 value: cutouts stored as float16 must stay below it.
FLOAT16_MAX: Final[float] = 65504.0


def psf_sigma_pixels(psf_fwhm_arcsec: float, pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC) -> float:
    """Gaussian sigma in pixels for a PSF of the given FWHM (arcsec): FWHM / (2 sqrt(2 ln 2) s)."""
    return psf_fwhm_arcsec / (2.0 * (2.0 * math.log(2.0)) ** 0.5 * pixel_scale_arcsec)


def pixel_noise_sigma(
    psfdepth: float, psf_fwhm_arcsec: float, pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC
) -> float:
    """Per-pixel noise (nmgy) from point-source depth (nmgy^-2) and a Gaussian PSF:
    ``sigma_pix = 1 / sqrt(psfdepth * NEA)`` with noise-equivalent area ``NEA = 4 pi sigma_px^2``."""
    sigma_px = psf_sigma_pixels(psf_fwhm_arcsec, pixel_scale_arcsec)
    return 1.0 / math.sqrt(psfdepth * 4.0 * math.pi * sigma_px**2)


def correlated_noise_sigma(
    psfdepth: float,
    psf_fwhm_arcsec: float,
    correlation_sigma_px: float,
    pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC,
) -> float:
    """White-noise sigma (nmgy per pixel, before smoothing) such that, once smoothed by a unit-sum
    Gaussian of ``correlation_sigma_px`` (coadd resampling), a point source's PSF-weighted
    flux has variance ``1 / psfdepth``, which is what psfdepth means:
    ``sigma_w = pixel_noise_sigma(psfdepth, fwhm) sqrt(1 + (sigma_c / sigma_psf)^2)``.
    (Continuum limit for a Gaussian PSF: Var(F) = sigma_w^2 4 pi sigma_psf^4 / (sigma_psf^2 +
    sigma_c^2).) The smoothed per-pixel sigma is ``sigma_w / (2 sqrt(pi) sigma_c)``."""
    sigma_psf = psf_sigma_pixels(psf_fwhm_arcsec, pixel_scale_arcsec)
    white = pixel_noise_sigma(psfdepth, psf_fwhm_arcsec, pixel_scale_arcsec)
    return white * math.sqrt(1.0 + (correlation_sigma_px / sigma_psf) ** 2)


def psfdepth_from_m5(m5: float) -> float:
    """Point-source inverse variance (nmgy^-2) for a 5-sigma depth m5 (AB):
    inverts ``m5 = 22.5 - 2.5 log10(5 / sqrt(psfdepth))``."""
    return (5.0 / 10.0 ** ((NANOMAGGY_ZEROPOINT_AB - m5) / 2.5)) ** 2


def m5_from_psfdepth(psfdepth: float) -> float:
    """5-sigma point-source depth (AB mag) of an inverse variance psfdepth (nmgy^-2)."""
    return NANOMAGGY_ZEROPOINT_AB - 2.5 * math.log10(5.0 / math.sqrt(psfdepth))


def m5_from_psfdepths(psfdepth: Sequence[float] | np.ndarray) -> np.ndarray:
    """``m5_from_psfdepth`` of each value (AB mag), NaN where psfdepth is not positive or is
    missing (no coverage). Element by element on purpose: numpy's vectorised log10 differs
    from the scalar one in the last bit for ~1% of values, and grid hosts and catalogue
    objects must land in the bins every grid run so far used (about 1 s per million values)."""
    return np.array(
        [m5_from_psfdepth(v) if v > 0 else np.nan for v in np.asarray(psfdepth, dtype=np.float64)],
        dtype=np.float64,
    )
