"""Lens deflections: SIE (closed form) plus external shear, as lenstronomy defines them.

SIE (lenstronomy ``SIE``): convergence ``kappa = theta_E / (2 sqrt(q x'^2 + y'^2 / q))``
with ``x'`` along the major axis at angle ``phi`` (rad, counter-clockwise from +x) about the
lens centre. In the major-axis frame, with ``b = theta_E sqrt(q)``, ``psi = sqrt(q^2 x'^2 +
y'^2)`` and ``e = sqrt(1 - q^2)`` (Kormann et al. 1994; Keeton & Kochanek 1998):
``alpha_x' = b/e atan(e x'/psi)``, ``alpha_y' = b/e atanh(e y'/psi)``; q -> 1 is the SIS.

External shear (lenstronomy ``SHEAR``) about the lens centre (lenstronomy's ``ra_0,
dec_0`` = lens centre): ``alpha_x = g1 dx + g2 dy``, ``alpha_y = g2 dx - g1 dy``.
All arrays broadcast; computations in float64.
"""

from __future__ import annotations

import torch

#: Below this 1 - q the SIS limit replaces the closed form (its e -> 0 limit; avoids 0/0).
ROUND_LIMIT = 1e-6


def sie_deflection(
    x: torch.Tensor,
    y: torch.Tensor,
    theta_e: torch.Tensor,
    q: torch.Tensor,
    phi: torch.Tensor,
    center_x: torch.Tensor,
    center_y: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deflection (arcsec) at (x, y) arcsec. Parameters broadcast against x, y."""
    dx, dy = x - center_x, y - center_y
    cos, sin = torch.cos(phi), torch.sin(phi)
    xp = cos * dx + sin * dy
    yp = cos * dy - sin * dx
    psi = torch.sqrt(q * q * xp * xp + yp * yp).clamp_min(1e-15)  # 0 only at the centre
    round_ = (1.0 - q) < ROUND_LIMIT
    if bool(round_.all()):
        # SIS limit (q = 1): alpha = theta_E (x', y') / r.
        ax_p, ay_p = theta_e * xp / psi, theta_e * yp / psi
    else:
        e = torch.sqrt((1.0 - q * q).clamp_min(ROUND_LIMIT))
        scale = theta_e * torch.sqrt(q) / e  # b / e with b = theta_E sqrt(q)
        ax_p = scale * torch.atan(e * xp / psi)
        ay_p = scale * torch.atanh((e * yp / psi).clamp(-1 + 1e-7, 1 - 1e-7))
        if bool(round_.any()):  # a batch mixing round and elliptical lenses
            ax_p = torch.where(round_, theta_e * xp / psi, ax_p)
            ay_p = torch.where(round_, theta_e * yp / psi, ay_p)
    return cos * ax_p - sin * ay_p, sin * ax_p + cos * ay_p


def shear_deflection(
    x: torch.Tensor,
    y: torch.Tensor,
    gamma1: torch.Tensor,
    gamma2: torch.Tensor,
    center_x: torch.Tensor,
    center_y: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    dx, dy = x - center_x, y - center_y
    return gamma1 * dx + gamma2 * dy, gamma2 * dx - gamma1 * dy


def ray_shoot(
    x: torch.Tensor,
    y: torch.Tensor,
    theta_e: torch.Tensor,
    q: torch.Tensor,
    phi: torch.Tensor,
    center_x: torch.Tensor,
    center_y: torch.Tensor,
    gamma1: torch.Tensor,
    gamma2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-plane position beta = theta - alpha(theta) for image-plane (x, y)."""
    ax, ay = sie_deflection(x, y, theta_e, q, phi, center_x, center_y)
    sx, sy = shear_deflection(x, y, gamma1, gamma2, center_x, center_y)
    return x - ax - sx, y - ay - sy
