"""Add rendered arcs to host cutouts and describe each injection in a truth table.

Truth per injection: every ArcParams parameter (``r_e`` circularised, and
``r_e_major_axis``); magnification (lensed / unlensed flux
inside the stamp, before the PSF); lensed AB magnitude per band (of the noiseless arc in
the stamp); arc S/N per band in the Einstein annulus ``|r - theta_E| <= FWHM_r`` about the
lens centre, against the noise that aperture sum really has:

    S/N = sum(arc) / (sigma_pix sqrt(n_pixels * eta))

``sigma_pix`` is the robust (1.4826 MAD) pixel scatter of the host's outer ring ``r >= 45
px``; ``eta`` corrects for correlated coadd noise (resampling): the sum of the noise's
autocorrelation over pixel lags up to 4 px, measured in that ring (the variance of a large
aperture sum is n sigma_pix^2 eta). For white noise eta = 1; on DR10-like coadds it is
several, and S/N assuming independent pixels overstated the arcs' significance (2.4x on the
mock survey). ``noise_eta_<band>`` is in the truth table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lenscal.physics.params import ArcParams, PhysicsError
from lenscal.physics.render import RenderSpec, render_arcs_with_truth
from lenscal.survey import BANDS

OUTER_RING_PX = 45.0
#: Largest pixel lag over which the noise autocorrelation is summed.
NOISE_LAG_PX = 4


@dataclass
class InjectionResult:
    images: torch.Tensor  # (N, 3, H, W) float32 nmgy: host + arc
    arcs: torch.Tensor  # (N, 3, H, W) the arcs alone (with noise when asked for)
    truth: pd.DataFrame


def inject(
    hosts: torch.Tensor | np.ndarray,
    params: ArcParams,
    spec: RenderSpec | None = None,
    *,
    noise_keys: Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> InjectionResult:
    """hosts (N, 3, H, W) nmgy + arcs rendered from ``params`` (one per host)."""
    host = torch.as_tensor(np.asarray(hosts) if not isinstance(hosts, torch.Tensor) else hosts)
    spec = spec or RenderSpec(size=int(host.shape[-1]))
    if host.ndim != 4 or host.shape[1] != len(BANDS):
        raise PhysicsError(f"hosts must be (N, 3, H, W), got {tuple(host.shape)}")
    if host.shape[0] != len(params):
        raise PhysicsError(f"{host.shape[0]} hosts but {len(params)} parameter sets")
    if host.shape[-1] != spec.size or host.shape[-2] != spec.size:
        raise PhysicsError(f"hosts are {tuple(host.shape[-2:])} px but the render spec is {spec.size} px")
    dev = torch.device(device) if device is not None else host.device
    host = host.to(dev, torch.float32)
    noiseless = render_arcs_with_truth(params, spec.model_copy(update={"poisson_gain": None}), device=dev)
    arcs = noiseless.arcs
    if spec.poisson_gain is not None:
        arcs = render_arcs_with_truth(params, spec, device=dev, noise_keys=noise_keys).arcs
    images = host + arcs
    truth = pd.DataFrame(params.to("cpu").records())
    truth["r_e_major_axis"] = truth["r_e"] / np.sqrt(truth["q_src"])  # arcsec, along the major axis
    truth["magnification"] = noiseless.magnification.cpu().numpy()
    truth = pd.concat([truth, clump_truth(params, noiseless.clump_added)], axis=1)
    flux = noiseless.arcs.double().sum(dim=(-2, -1)).cpu().numpy()
    with np.errstate(divide="ignore"):
        for b, band in enumerate(BANDS):
            truth[f"lensed_mag_{band}"] = 22.5 - 2.5 * np.log10(flux[:, b])
    snr, eta = arc_snr_and_eta(host, noiseless.arcs, params, spec)
    for b, band in enumerate(BANDS):
        truth[f"arc_snr_{band}"] = snr[:, b]
    for b, band in enumerate(BANDS):
        truth[f"noise_eta_{band}"] = eta[:, b]
    if noise_keys is not None:
        truth["noise_key"] = [str(k) for k in noise_keys]
    truth["poisson_gain"] = spec.poisson_gain if spec.poisson_gain is not None else np.inf
    return InjectionResult(images=images, arcs=arcs, truth=truth)


def clump_truth(params: ArcParams, added: torch.Tensor | None) -> pd.DataFrame:
    """Per injection: ``clump_model`` (none, gaussian, team), ``n_clumps``, ``clump_fraction``
    (Gaussian: of the unlensed flux; team: the mixing fraction m) and ``clump_flux_r`` (nmgy,
    r band: Gaussian: the unlensed flux the clumps carry; team: the flux the mixing adds in
    the stamp before the PSF, which the team's model does not conserve)."""
    n = len(params)
    p = params.to("cpu")
    weights = p.clumps[..., 3] if p.clumps is not None else torch.zeros((n, 0), dtype=torch.float64)
    count = (weights > 0).sum(-1).numpy()
    team = p.team_clump_rows().numpy()
    mix = p.clump_mix.numpy() if p.clump_mix is not None else np.zeros(n)
    flux_r = 10.0 ** (-0.4 * (p.mag_r.numpy() - 22.5))
    fraction = np.where(team, mix, weights.sum(-1).numpy())
    gained = added.cpu().double().numpy() if added is not None else np.zeros(n)
    return pd.DataFrame(
        {
            "clump_model": np.where(count == 0, "none", np.where(team, "team", "gaussian")),
            "n_clumps": count.astype(np.int64),
            "clump_fraction": np.where(count == 0, 0.0, fraction),
            "clump_flux_r": np.where(team, gained, fraction) * flux_r * (count > 0),
        }
    )


def arc_snr(host: torch.Tensor, arcs: torch.Tensor, params: ArcParams, spec: RenderSpec) -> np.ndarray:
    """(N, 3) S/N of the noiseless arc in the Einstein annulus (see the module docstring)."""
    return arc_snr_and_eta(host, arcs, params, spec)[0]


def arc_snr_and_eta(
    host: torch.Tensor, arcs: torch.Tensor, params: ArcParams, spec: RenderSpec
) -> tuple[np.ndarray, np.ndarray]:
    """((N, 3) S/N, (N, 3) noise-correlation factor eta)."""
    n, _, h, w = host.shape
    dev = host.device
    rows = (torch.arange(h, device=dev, dtype=torch.float64) - (h - 1) / 2) * spec.pixel_scale
    cols = (torch.arange(w, device=dev, dtype=torch.float64) - (w - 1) / 2) * spec.pixel_scale
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    p = params.to(dev)
    r_lens = torch.hypot(x - p.lens_x.reshape(-1, 1, 1), y - p.lens_y.reshape(-1, 1, 1))
    width = p.psf_fwhm_r.reshape(-1, 1, 1)
    ring = (r_lens - p.theta_e.reshape(-1, 1, 1)).abs() <= width  # (N, H, W)
    sky = torch.nan_to_num(host, nan=0.0).double()
    outer = torch.hypot(x, y) / spec.pixel_scale >= OUTER_RING_PX
    sigma = _robust_sigma(sky.reshape(n, 3, h * w)[:, :, outer.reshape(-1)])  # (N, 3)
    eta = _correlation_factor(sky, outer, sigma)
    signal = (arcs.double() * ring.unsqueeze(1)).sum(dim=(-2, -1))
    npix = ring.sum(dim=(-2, -1)).clamp_min(1).double().unsqueeze(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = signal / (sigma * (npix * eta).sqrt())
    return snr.cpu().numpy(), eta.cpu().numpy()


def _robust_sigma(values: torch.Tensor) -> torch.Tensor:
    median = values.median(dim=-1, keepdim=True).values
    return 1.4826 * (values - median).abs().median(dim=-1).values


def _correlation_factor(sky: torch.Tensor, outer: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """eta = sum over lags |dx|, |dy| <= NOISE_LAG_PX of the noise autocorrelation, measured on
    pixel pairs that both lie in ``outer`` (values clipped at 5 sigma against sources)."""
    n, c, h, w = sky.shape
    mask = outer.to(sky.dtype)
    median = sky.reshape(n, c, -1)[:, :, outer.reshape(-1)].median(dim=-1).values
    z = ((sky - median[..., None, None]) / sigma.clamp_min(1e-30)[..., None, None]).clamp(-5.0, 5.0) * mask
    lag = NOISE_LAG_PX
    total = torch.zeros_like(sigma)
    variance = (z * z).sum(dim=(-2, -1)) / mask.sum()
    for dy in range(0, lag + 1):
        for dx in range(-lag, lag + 1):
            if dy == 0 and dx < 0:
                continue  # each lag pair once: rho(-d) = rho(d)
            a = z[..., dy:, max(dx, 0) : w + min(dx, 0)]
            b = z[..., : h - dy, max(-dx, 0) : w - max(dx, 0)]
            pairs = (
                mask[dy:, max(dx, 0) : w + min(dx, 0)] * mask[: h - dy, max(-dx, 0) : w - max(dx, 0)]
            ).sum()
            rho = (a * b).sum(dim=(-2, -1)) / pairs.clamp_min(1) / variance.clamp_min(1e-30)
            total += rho if (dy == 0 and dx == 0) else 2 * rho
    return torch.where(torch.isfinite(total) & (total > 0), total, torch.ones_like(total))
