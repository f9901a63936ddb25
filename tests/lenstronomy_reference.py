"""Render the same arcs with lenstronomy as the reference: same pixel grid and lens/source
definitions, and lenstronomy's own PSF handling, never lenscal's kernel: the lensed source
is convolved with the optical PSF on a supersampled grid and only then binned to pixels
(``supersampling_convolution``), which counts the pixel response exactly once. A Gaussian
PSF is lenstronomy's GAUSSIAN; a Moffat is an analytic kernel sampled here on the
supersampled grid. Used by the physics tests and make_golden.py (never by the product)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lenscal.physics import ArcParams, RenderSpec, flux_nmgy
from lenscal.physics.source import sersic_b, sersic_ie


def moffat_supersampled(fwhm_arcsec: float, beta: float, pixel_scale: float, factor: int) -> np.ndarray:
    """An odd-sized Moffat kernel at ``factor`` sub-pixels per pixel, covering 99.99% of the flux."""
    alpha = fwhm_arcsec / pixel_scale / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))  # pixels
    radius_px = alpha * np.sqrt(1e4 ** (1.0 / (beta - 1.0)) - 1.0)
    half = int(np.ceil(radius_px * factor))
    offsets = np.arange(-half, half + 1) / factor
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = (1.0 + r2 / alpha**2) ** (-beta)
    return kernel / kernel.sum()


def lenstronomy_arcs(params: ArcParams, spec: RenderSpec, supersample: int | None = None) -> np.ndarray:
    """(N, 3, H, W) float64 nanomaggies per pixel; ``supersample`` sub-pixels per pixel side
    for both the source and the convolution (default: the spec's oversample)."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util import param_util

    size, s = spec.size, spec.pixel_scale
    c = (size - 1) / 2.0
    data = ImageData(
        image_data=np.zeros((size, size)),
        transform_pix2angle=np.array([[s, 0.0], [0.0, s]]),  # x along columns, y along rows
        ra_at_xy_0=-c * s,
        dec_at_xy_0=-c * s,
    )
    factor = supersample or spec.oversample
    numerics = {"supersampling_factor": factor, "supersampling_convolution": True}
    out = np.zeros((len(params), 3, size, size))
    for i, p in enumerate(params.records()):
        e1, e2 = param_util.phi_q2_ellipticity(p["phi_lens"], p["q_lens"])
        es1, es2 = param_util.phi_q2_ellipticity(p["phi_src"], p["q_src"])
        kwargs_lens = [
            {"theta_E": p["theta_e"], "e1": e1, "e2": e2, "center_x": p["lens_x"], "center_y": p["lens_y"]},
            {"gamma1": p["gamma1"], "gamma2": p["gamma2"], "ra_0": p["lens_x"], "dec_0": p["lens_y"]},
        ]
        n = torch.tensor([p["n_sersic"]], dtype=torch.float64)
        b_exact = float(sersic_b(n)[0])
        b_approx = 1.9992 * p["n_sersic"] - 0.3271  # lenstronomy's b_n
        r_sersic = p["r_e"] * (b_approx / b_exact) ** p["n_sersic"]  # same profile, lenstronomy's b_n
        for band, name in enumerate("grz"):
            flux = float(flux_nmgy(torch.tensor(p[f"mag_{name}"], dtype=torch.float64)))
            i_e = float(sersic_ie(torch.tensor(flux), torch.tensor(p["r_e"]), n[0], torch.tensor(b_exact)))
            amp = i_e * np.exp(-b_exact * ((r_sersic / p["r_e"]) ** (1.0 / p["n_sersic"]) - 1.0))
            fwhm = p[f"psf_fwhm_{name}"]
            if spec.psf == "gaussian":
                psf = PSF(psf_type="GAUSSIAN", fwhm=fwhm, truncation=6)
            else:
                kernel = moffat_supersampled(fwhm, spec.moffat_beta, s, factor)
                psf = PSF(
                    psf_type="PIXEL", kernel_point_source=kernel, point_source_supersampling_factor=factor
                )
            model = ImageModel(
                data,
                psf,
                lens_model_class=LensModel(["SIE", "SHEAR"]),
                source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                kwargs_numerics=numerics,
            )
            kwargs_source: list[dict[str, Any]] = [
                {"amp": amp, "R_sersic": r_sersic, "n_sersic": p["n_sersic"], "e1": es1, "e2": es2,
                 "center_x": p["src_x"], "center_y": p["src_y"]}
            ]  # fmt: skip
            out[i, band] = model.image(kwargs_lens=kwargs_lens, kwargs_source=kwargs_source)
    return out


def random_params(n: int, seed: int) -> ArcParams:
    """Draws over the team's prior ranges (docs/science.md), bright enough to compare shapes."""
    rng = np.random.default_rng(seed)
    theta_e = rng.uniform(0.5, 3.0, n)
    beta = np.sqrt(rng.uniform(0.1**2, 1.0**2, n)) * theta_e
    angle = rng.uniform(0, 2 * np.pi, n)
    lens_x, lens_y = rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)
    mag_r = rng.uniform(20.0, 24.0, n)
    fwhm_r = rng.uniform(0.9, 1.8, n)
    values = {
        "theta_e": theta_e,
        "q_lens": rng.uniform(0.5, 1.0, n),
        "phi_lens": rng.uniform(0, np.pi, n),
        "lens_x": lens_x,
        "lens_y": lens_y,
        "gamma1": rng.normal(0, 0.05, n),
        "gamma2": rng.normal(0, 0.05, n),
        "src_x": lens_x + beta * np.cos(angle),
        "src_y": lens_y + beta * np.sin(angle),
        "r_e": rng.uniform(0.15, 0.5, n),
        "n_sersic": rng.uniform(0.5, 2.0, n),
        "q_src": rng.uniform(0.3, 1.0, n),
        "phi_src": rng.uniform(0, np.pi, n),
        "mag_g": mag_r + rng.normal(1.15, 0.3, n),
        "mag_r": mag_r,
        "mag_z": mag_r - rng.normal(0.85, 0.2, n),
        "psf_fwhm_g": fwhm_r * 1.05,
        "psf_fwhm_r": fwhm_r,
        "psf_fwhm_z": fwhm_r * 0.94,
    }
    return ArcParams.from_tensors(values)
