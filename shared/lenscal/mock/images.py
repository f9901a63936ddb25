"""Cutouts for the mock survey: galaxies, neighbours and stars rendered with the per-band
PSF (lenscal.physics), hard confusers, lensed arcs on the positives, and coadd-like noise.

Noise: the mock's depth columns and its pixels agree under one stated formula. White
Gaussian noise of ``lenscal.survey.correlated_noise_sigma(psfdepth, psfsize, 0.7)`` is
smoothed by a unit-sum Gaussian of 0.7 px (coadd resampling), so that a point source's
PSF-weighted flux has exactly the variance ``1 / psfdepth`` its columns state (tested),
while the per-pixel sigma is ``0.40 x`` that white sigma, which is how real DR10 coadds land
in the outer-ring sigma ranges of docs/science.md. Binning hosts by depth bins them by noise.

Positives use a clumpier, brighter, more compact-source prior than lenscal's injection
priors (the realism gap between real lenses and injections), with SIE lenses aligned with
their host's light. Tier A: arc S/N_r >= 20 in the Einstein annulus (lenscal.injection.inject
.arc_snr, correlated noise accounted for); Tier B otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter

from lenscal.data.manifest import TIERS
from lenscal.injection.hosts import host_shape
from lenscal.injection.inject import arc_snr
from lenscal.injection.priors import InjectionPrior, LensPrior, SourcePrior, sample_params
from lenscal.physics import ArcParams, RenderSpec, render_arcs
from lenscal.physics.params import NO_LENS, psf_fields
from lenscal.physics.render import convolve_psf
from lenscal.rng import mock_rng
from lenscal.survey import PIXEL_SCALE_ARCSEC, correlated_noise_sigma

CORRELATION_SIGMA_PX = 0.7
TIER_A_SNR = 20.0  # S/N against correlated noise: ~20% of mock lenses are Tier A
GALAXY_SPEC = RenderSpec(oversample=2, chunk_size=64)
ARC_SPEC = RenderSpec(oversample=4, chunk_size=32)
REAL_LENS_PRIOR = InjectionPrior(
    name="mock_real_lenses",
    source_params=SourcePrior(
        r_mag_range=(22.0, 25.0),
        beta_frac_range=(0.05, 0.5),
        re_arcsec_range=(0.1, 0.6),
        n_range=(0.5, 1.5),
        q_range=(0.3, 1.0),
        clumps_prob=0.8,
        clumps_n_range=(1, 5),  # numpy's [1, 5): 1-4 clumps
        clumps_frac_range=(0.15, 0.45),
    ),
    lens_params=LensPrior(shear_sigma=0.04, center_sigma_arcsec=0.03, q_lens_range=(0.5, 1.0)),
)
#: The demo's lenses (`make demo`, `lenscal demo-data`): the same prior with sources up to
#: 4 mag brighter (unlensed r 18-23.5), so the demo's finder, trained for about three CPU
#: minutes, learns what an arc is (val AUC >= 0.95 instead of ~0.85 on the default mock).
DEMO_LENS_PRIOR = REAL_LENS_PRIOR.model_copy(
    update={
        "name": "mock_demo_lenses",
        "source_params": REAL_LENS_PRIOR.source_params.model_copy(update={"r_mag_range": (18.0, 23.5)}),
    }
)


def render_cutouts(
    catalog: pd.DataFrame, seed: int, lens_prior: InjectionPrior = REAL_LENS_PRIOR
) -> tuple[np.ndarray, pd.DataFrame]:
    """(N, 3, 101, 101) float32 cutouts in nmgy and per-object truth (tier, lens parameters);
    the positives' arcs drawn from ``lens_prior``."""
    n = len(catalog)
    size = GALAXY_SPEC.size
    images = torch.zeros((n, 3, size, size), dtype=torch.float32)
    fwhm = catalog[["psfsize_g", "psfsize_r", "psfsize_z"]].to_numpy(dtype=np.float64)
    components, owners = [], []
    # Generators are keyed by galaxy_id, so a cutout does not depend on its chunk.
    for i, row in enumerate(catalog.itertuples(index=False)):
        for comp in _light_components(row, mock_rng(seed, str(row.galaxy_id), "image"), fwhm[i]):
            components.append(comp)
            owners.append(i)
    rendered = render_arcs(ArcParams.from_records(components), GALAXY_SPEC)
    images.index_add_(0, torch.tensor(owners), rendered)
    for i, row in enumerate(catalog.itertuples(index=False)):
        if row.confuser_category in ("ring", "spiral"):
            pattern = _confuser_pattern(row, mock_rng(seed, str(row.galaxy_id), "confuser"), size)
            images[i] += convolve_psf(pattern[None], torch.tensor(fwhm[i : i + 1]), GALAXY_SPEC)[0].float()
    truth = pd.DataFrame(index=range(n))
    truth["tier"] = None
    positives = np.flatnonzero(catalog["label"].to_numpy() == 1)
    arcs = torch.zeros((0, 3, size, size))
    lens: ArcParams | None = None
    if positives.size:
        lens = _lens_params(catalog.iloc[positives], seed, fwhm[positives], lens_prior)
        arcs = render_arcs(lens, ARC_SPEC)
        images[positives] += arcs
    _add_noise(images, catalog, seed)
    if positives.size and lens is not None:
        snr = arc_snr(images[positives], arcs, lens, ARC_SPEC)
        truth.loc[positives, "tier"] = np.where(snr[:, 1] >= TIER_A_SNR, TIERS[0], TIERS[1])
        truth.loc[positives, "arc_snr_r"] = snr[:, 1]
        for name in ("theta_e", "q_lens", "r_e", "mag_r"):
            truth.loc[positives, f"lens_{name}"] = getattr(lens, name).numpy()
    _mask_strips(images, catalog["galaxy_id"].tolist(), seed)
    return images.numpy(), truth


def _light_components(row: Any, rng: np.random.Generator, fwhm: np.ndarray) -> list[dict[str, Any]]:
    q, phi = host_shape(np.array([row.shape_e1]), np.array([row.shape_e2]))
    mags = [22.5 - 2.5 * np.log10(getattr(row, f"flux_{b}")) for b in "grz"]
    base = {**NO_LENS, **psf_fields(fwhm)}
    main = {
        **base,
        "src_x": 0.0,
        "src_y": 0.0,
        "r_e": row.shape_r,
        "n_sersic": row.sersic,
        "q_src": float(q[0]),
        "phi_src": float(phi[0]),
        "mag_g": mags[0],
        "mag_r": mags[1],
        "mag_z": mags[2],
    }
    parts = [main]
    if row.confuser_category == "merger":
        dx, dy = rng.normal(0, 1.5, 2)
        companion_r = mags[1] + rng.uniform(0.0, 1.0)
        parts.append(
            {
                **main,
                "src_x": dx,
                "src_y": dy,
                "r_e": rng.uniform(0.5, 1.5),
                "mag_r": companion_r,
                "mag_g": companion_r + 1.0,
                "mag_z": companion_r - 0.7,
            }
        )
        tail_r = mags[1] + rng.uniform(1.5, 2.5)
        parts.append(
            {
                **main,
                "src_x": 1.6 * dx,
                "src_y": 1.6 * dy,
                "r_e": rng.uniform(1.5, 3.0),
                "n_sersic": 0.6,
                "q_src": rng.uniform(0.12, 0.25),
                "phi_src": float(np.arctan2(dy, dx)) % np.pi,
                "mag_r": tail_r,
                "mag_g": tail_r + 0.6,
                "mag_z": tail_r - 0.4,
            }
        )
    for _ in range(int(rng.integers(0, 4)) if rng.uniform() < 0.5 else 0):  # neighbours
        radius, angle = rng.uniform(4.0, 12.5), rng.uniform(0, 2 * np.pi)
        mag = rng.uniform(20.0, 23.5)
        parts.append(
            {
                **base,
                "src_x": radius * np.cos(angle),
                "src_y": radius * np.sin(angle),
                "r_e": rng.uniform(0.3, 1.2),
                "n_sersic": rng.choice([1.0, 4.0]),
                "q_src": rng.uniform(0.4, 1),
                "phi_src": rng.uniform(0, np.pi),
                "mag_g": mag + rng.normal(1.0, 0.4),
                "mag_r": mag,
                "mag_z": mag - rng.normal(0.7, 0.3),
            }
        )
    for _ in range(int(rng.integers(1, 3)) if rng.uniform() < 0.3 else 0):  # stars: unresolved
        radius, angle = rng.uniform(5.0, 12.5), rng.uniform(0, 2 * np.pi)
        mag = rng.uniform(17.0, 22.0)
        parts.append(
            {
                **base,
                "src_x": radius * np.cos(angle),
                "src_y": radius * np.sin(angle),
                "r_e": 0.02,
                "n_sersic": 1.0,
                "q_src": 1.0,
                "phi_src": 0.0,
                "mag_g": mag + rng.uniform(0.3, 1.5),
                "mag_r": mag,
                "mag_z": mag - rng.uniform(0.2, 1.0),
            }
        )
    return parts


def _confuser_pattern(row: Any, rng: np.random.Generator, size: int) -> torch.Tensor:
    """Unconvolved (3, H, W) nmgy: a blue ring, or two-armed spiral arms, about the centre."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = (xx - c) * PIXEL_SCALE_ARCSEC, (yy - c) * PIXEL_SCALE_ARCSEC
    q, phi = host_shape(np.array([row.shape_e1]), np.array([row.shape_e2]))
    xp = x * np.cos(phi[0]) + y * np.sin(phi[0])
    yp = y * np.cos(phi[0]) - x * np.sin(phi[0])
    radius = np.sqrt(q[0] * xp**2 + yp**2 / q[0])
    if row.confuser_category == "ring":
        r0, width = rng.uniform(1.5, 4.0), rng.uniform(0.2, 0.5)
        profile = np.exp(-0.5 * ((radius - r0) / width) ** 2)
        mag_r, g_r, r_z = rng.uniform(19.0, 21.0), 0.45, 0.3
    else:
        pitch = np.radians(rng.uniform(15, 30))
        angle = np.arctan2(yp, xp)
        arms = 0.5 * (1 + np.cos(2 * (angle - np.log(np.maximum(radius, 0.1)) / np.tan(pitch))))
        profile = arms**3 * np.exp(-radius / rng.uniform(1.0, 2.0)) * (radius > 0.8)
        mag_r, g_r, r_z = rng.uniform(18.5, 20.5), 0.5, 0.35
    profile /= profile.sum()
    flux = [10 ** (-0.4 * (m - 22.5)) for m in (mag_r + g_r, mag_r, mag_r - r_z)]
    return torch.from_numpy(np.stack([f * profile for f in flux]))


def _lens_params(hosts: pd.DataFrame, seed: int, fwhm: np.ndarray, prior: InjectionPrior) -> ArcParams:
    ids = hosts["galaxy_id"].tolist()
    q_host, phi_host = host_shape(hosts["shape_e1"].to_numpy(), hosts["shape_e2"].to_numpy())
    theta = np.array([mock_rng(seed, gid, "lens").uniform(0.8, 2.5) for gid in ids])
    scatter = np.array([mock_rng(seed, gid, "lens-q").normal(0, 0.1) for gid in ids])
    numbers = [int(gid.rsplit("_", 1)[-1]) for gid in ids]  # mock ids end in the object index
    return sample_params(
        prior,
        theta,
        fwhm,
        seed=seed,
        cell="mock-positives",
        indices=numbers,
        host_q=np.clip(q_host + scatter, 0.5, 1.0),
        host_phi=phi_host,
    )


def _add_noise(images: torch.Tensor, catalog: pd.DataFrame, seed: int) -> None:
    for i, row in enumerate(catalog.itertuples(index=False)):
        rng = mock_rng(seed, str(row.galaxy_id), "noise")
        for b, band in enumerate("grz"):
            sigma = correlated_noise_sigma(
                getattr(row, f"psfdepth_{band}"), getattr(row, f"psfsize_{band}"), CORRELATION_SIGMA_PX
            )
            white = rng.normal(0.0, sigma, images.shape[-2:])
            images[i, b] += torch.from_numpy(
                gaussian_filter(white, CORRELATION_SIGMA_PX, mode="wrap")
            ).float()


def _mask_strips(images: torch.Tensor, ids: list[str], seed: int) -> None:
    """3% of cutouts get an edge strip of NaN (survey edge / bad columns), as real ones do."""
    for i, gid in enumerate(ids):
        rng = mock_rng(seed, gid, "mask")
        if rng.uniform() < 0.03:
            width = int(rng.integers(3, 15))
            bands = slice(None) if rng.uniform() < 0.5 else slice(int(rng.integers(3)), None)
            images[i, bands, :, :width] = float("nan")
