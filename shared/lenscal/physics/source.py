"""Source light: elliptical Sérsic (lenstronomy SERSIC_ELLIPSE geometry) and Gaussian clumps.

``I(R) = I_e exp(-b_n ((R / R_e)^(1/n) - 1))`` with the product-average elliptical radius
``R = sqrt(q x'^2 + y'^2 / q)`` (``x'`` along the major axis at ``phi``). ``b_n`` is the
exact root of ``gamma(2n, b_n) = Gamma(2n) / 2``, so ``R_e`` is truly the half-light radius
(lenstronomy uses the approximation ``1.9992 n - 0.3271``; a lenstronomy profile with
``R_sersic = R_e (b_approx / b_n)^n`` is the same function). Brightness is normalised
analytically so the total unlensed flux is the requested one:
``F = 2 pi n I_e R_e^2 e^(b_n) Gamma(2n) / b_n^(2n)`` (surface brightness in nmgy/arcsec^2).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def sersic_b(n: torch.Tensor) -> torch.Tensor:
    """Exact b_n (float64, same device as n)."""
    from scipy.special import gammaincinv

    values = gammaincinv(2.0 * n.detach().cpu().double().numpy(), 0.5)
    return torch.as_tensor(np.asarray(values), dtype=torch.float64, device=n.device)


def sersic_ie(flux: torch.Tensor, r_e: torch.Tensor, n: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Surface brightness at R_e (nmgy/arcsec^2) for total flux ``flux`` (nmgy)."""
    two_n = 2.0 * n
    log_norm = (
        math.log(2.0 * math.pi)
        + torch.log(n)
        + 2.0 * torch.log(r_e)
        + b
        + torch.lgamma(two_n)
        - two_n * torch.log(b)
    )
    return flux * torch.exp(-log_norm)


def sersic_sb(
    x: torch.Tensor,
    y: torch.Tensor,
    flux: torch.Tensor,
    r_e: torch.Tensor,
    n: torch.Tensor,
    q: torch.Tensor,
    phi: torch.Tensor,
    center_x: torch.Tensor,
    center_y: torch.Tensor,
    b: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sérsic surface brightness (nmgy/arcsec^2) at source-plane (x, y) arcsec."""
    b = sersic_b(n) if b is None else b
    dx, dy = x - center_x, y - center_y
    cos, sin = torch.cos(phi), torch.sin(phi)
    xp = cos * dx + sin * dy
    yp = cos * dy - sin * dx
    radius2 = q * xp * xp + yp * yp / q
    # (R / R_e)^(1/n) as exp(log(R^2) / 2n - log(R_e) / n): one log + exp, no sqrt or pow.
    scaled = torch.exp(torch.log(radius2) * (0.5 / n) - torch.log(r_e) / n)
    return sersic_ie(flux, r_e, n, b) * torch.exp(b - b * scaled)


def gaussian_clumps_sb(
    x: torch.Tensor,
    y: torch.Tensor,
    clumps: torch.Tensor,
    flux: torch.Tensor,
    center_x: torch.Tensor,
    center_y: torch.Tensor,
) -> torch.Tensor:
    """Sum of circular Gaussian clumps (nmgy/arcsec^2). ``clumps``: (N, K, 4) of
    (dx, dy, sigma, fraction); x, y: (N, ...) grids; flux, centres: (N,)."""
    extra_dims = x.ndim - 1
    total = torch.zeros_like(x)
    for k in range(clumps.shape[1]):
        c = clumps[:, k].reshape(clumps.shape[0], 4, *([1] * extra_dims))
        cx = center_x.reshape(-1, *([1] * extra_dims)) + c[:, 0]
        cy = center_y.reshape(-1, *([1] * extra_dims)) + c[:, 1]
        sigma, frac = c[:, 2], c[:, 3]
        f = flux.reshape(-1, *([1] * extra_dims)) * frac
        total = total + f / (2 * math.pi * sigma**2) * torch.exp(
            -((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)
        )
    return total
