"""Add rendered arcs to host cutouts and describe each injection in a truth table.

Truth per injection: every ArcParams parameter (``r_e`` circularised, and
``r_e_major_axis``); magnification (lensed / unlensed flux
inside the stamp, before the PSF); lensed AB magnitude per band (of the noiseless arc in
the stamp); arc S/N per band in the Einstein annulus ``|r - theta_E| <= FWHM_r`` about the
lens centre: ``sum(arc) / (sigma_host sqrt(n_pixels))``, with ``sigma_host`` the robust
(1.4826 MAD) scatter of the host's outer ring ``r >= 45 px``.
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
    flux = noiseless.arcs.double().sum(dim=(-2, -1)).cpu().numpy()
    with np.errstate(divide="ignore"):
        for b, band in enumerate(BANDS):
            truth[f"lensed_mag_{band}"] = 22.5 - 2.5 * np.log10(flux[:, b])
    snr = arc_snr(host, noiseless.arcs, params, spec)
    for b, band in enumerate(BANDS):
        truth[f"arc_snr_{band}"] = snr[:, b]
    if noise_keys is not None:
        truth["noise_key"] = [str(k) for k in noise_keys]
    truth["poisson_gain"] = spec.poisson_gain if spec.poisson_gain is not None else np.inf
    return InjectionResult(images=images, arcs=arcs, truth=truth)


def arc_snr(host: torch.Tensor, arcs: torch.Tensor, params: ArcParams, spec: RenderSpec) -> np.ndarray:
    """(N, 3) aperture S/N of the noiseless arc in the Einstein annulus (see module doc)."""
    n, _, h, w = host.shape
    dev = host.device
    rows = (torch.arange(h, device=dev, dtype=torch.float64) - (h - 1) / 2) * spec.pixel_scale
    cols = (torch.arange(w, device=dev, dtype=torch.float64) - (w - 1) / 2) * spec.pixel_scale
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    p = params.to(dev)
    r_lens = torch.hypot(x - p.lens_x.reshape(-1, 1, 1), y - p.lens_y.reshape(-1, 1, 1))
    width = p.psf_fwhm_r.reshape(-1, 1, 1)
    ring = (r_lens - p.theta_e.reshape(-1, 1, 1)).abs() <= width  # (N, H, W)
    r_centre = torch.hypot(x, y) / spec.pixel_scale
    outer = (r_centre >= OUTER_RING_PX).reshape(-1)
    sky = torch.nan_to_num(host, nan=0.0).reshape(n, 3, h * w)[:, :, outer].double()
    median = sky.median(dim=-1, keepdim=True).values
    sigma = 1.4826 * (sky - median).abs().median(dim=-1).values  # (N, 3)
    signal = (arcs.double() * ring.unsqueeze(1)).sum(dim=(-2, -1))
    npix = ring.sum(dim=(-2, -1)).clamp_min(1).double().unsqueeze(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = signal / (sigma * npix.sqrt())
    return snr.cpu().numpy()
