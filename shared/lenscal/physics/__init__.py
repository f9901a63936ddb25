"""Lensing physics: SIE + shear ray shooting, Sérsic sources, PSFs, batched arc rendering.

Conventions are those of docs/science.md, "Arc rendering conventions" and are tested against lenstronomy.
"""

from lenscal.physics.params import PARAM_NAMES, ArcParams, PhysicsError, flux_nmgy
from lenscal.physics.render import RenderResult, RenderSpec, render_arcs, render_arcs_with_truth

__all__ = [
    "PARAM_NAMES",
    "ArcParams",
    "PhysicsError",
    "RenderResult",
    "RenderSpec",
    "flux_nmgy",
    "render_arcs",
    "render_arcs_with_truth",
]
