"""Arc parameters as batched tensors, validated with errors naming parameter, row and value.

Units and conventions (docs/science.md, "Arc rendering conventions"): angles on the sky in arcsec, position
angles in radians counter-clockwise from +x (+x = increasing column), magnitudes AB.
``r_e`` is the Sérsic half-light radius in the *circularised* elliptical radius
``sqrt(q x'^2 + y'^2 / q)`` (lenstronomy's SERSIC_ELLIPSE); a half-light radius measured
along the major axis is ``r_e / sqrt(q_src)``. Shear ``gamma1, gamma2`` as lenstronomy's SHEAR.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lenscal.errors import LenscalError


class PhysicsError(LenscalError):
    """Arc parameters or render settings out of their physical domain."""


#: name -> (unit, rule text, check on a float64 tensor returning a valid mask)
RULES: dict[str, tuple[str, str, Any]] = {
    "theta_e": ("arcsec", "in [0, 10] (0: no lens)", lambda v: (v >= 0) & (v <= 10)),
    "q_lens": ("", "in (0, 1]", lambda v: (v > 0) & (v <= 1)),
    "phi_lens": ("rad", "finite", None),
    "lens_x": ("arcsec", "within 100 arcsec of the centre", lambda v: v.abs() <= 100),
    "lens_y": ("arcsec", "within 100 arcsec of the centre", lambda v: v.abs() <= 100),
    "gamma1": ("", "|gamma| < 1", None),
    "gamma2": ("", "|gamma| < 1", None),
    "src_x": ("arcsec", "within 100 arcsec of the centre", lambda v: v.abs() <= 100),
    "src_y": ("arcsec", "within 100 arcsec of the centre", lambda v: v.abs() <= 100),
    "r_e": ("arcsec", "in (0, 10]", lambda v: (v > 0) & (v <= 10)),
    "n_sersic": ("", "in [0.2, 10]", lambda v: (v >= 0.2) & (v <= 10)),
    "q_src": ("", "in (0, 1]", lambda v: (v > 0) & (v <= 1)),
    "phi_src": ("rad", "finite", None),
    "mag_g": ("AB mag", "in [0, 40]", lambda v: (v >= 0) & (v <= 40)),
    "mag_r": ("AB mag", "in [0, 40]", lambda v: (v >= 0) & (v <= 40)),
    "mag_z": ("AB mag", "in [0, 40]", lambda v: (v >= 0) & (v <= 40)),
    "psf_fwhm_g": ("arcsec", "in (0, 10]", lambda v: (v > 0) & (v <= 10)),
    "psf_fwhm_r": ("arcsec", "in (0, 10]", lambda v: (v > 0) & (v <= 10)),
    "psf_fwhm_z": ("arcsec", "in (0, 10]", lambda v: (v > 0) & (v <= 10)),
}
PARAM_NAMES: tuple[str, ...] = tuple(RULES)


@dataclass
class ArcParams:
    """One tensor of shape (N,) per parameter (float64 on the render device).

    ``clumps``: optional (N, K, 4) tensor of Gaussian source clumps, each
    ``(dx, dy, sigma, flux_fraction)`` in arcsec relative to the source centre; the fractions
    are of the total unlensed flux (the Sérsic keeps the rest).

    ``clump_mix``: optional (N,) tensor. A row with ``clump_mix = m > 0`` has the team's clump
    model instead (their engine before 2026-02-16, ``_add_clumps``): its clumps'
    fourth column is a relative weight (weights sum to 1), and the clumps are mixed into the
    lensed source at pixel resolution, ``(1 - m) U + m (mean U + std U * C / max C)``, where
    U is the pixel-binned lensed Sérsic of unit flux, mean and (n - 1) std are over the whole
    stamp and C the weighted Gaussians at the pixel centres' source-plane positions. Flux is
    not conserved (the stamp gains ``m std U sum C / max C``). ``m`` in (0, 0.9].
    """

    theta_e: torch.Tensor
    q_lens: torch.Tensor
    phi_lens: torch.Tensor
    lens_x: torch.Tensor
    lens_y: torch.Tensor
    gamma1: torch.Tensor
    gamma2: torch.Tensor
    src_x: torch.Tensor
    src_y: torch.Tensor
    r_e: torch.Tensor
    n_sersic: torch.Tensor
    q_src: torch.Tensor
    phi_src: torch.Tensor
    mag_g: torch.Tensor
    mag_r: torch.Tensor
    mag_z: torch.Tensor
    psf_fwhm_g: torch.Tensor
    psf_fwhm_r: torch.Tensor
    psf_fwhm_z: torch.Tensor
    clumps: torch.Tensor | None = None
    clump_mix: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.theta_e.shape[0])

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], device: str | torch.device = "cpu"
    ) -> ArcParams:
        rows = list(records)
        if not rows:
            raise PhysicsError("no arc parameters given")
        columns: dict[str, torch.Tensor] = {}
        for name in PARAM_NAMES:
            values = []
            for i, row in enumerate(rows):
                if name not in row:
                    raise PhysicsError(f"row {i}: missing parameter {name!r}")
                try:
                    values.append(float(row[name]))
                except (TypeError, ValueError):
                    raise PhysicsError(f"row {i}: parameter {name}={row[name]!r} is not a number") from None
            columns[name] = torch.tensor(values, dtype=torch.float64, device=device)
        unknown = sorted({k for row in rows for k in row} - set(PARAM_NAMES) - {"clumps", "clump_mix", "id"})
        if unknown:
            raise PhysicsError(f"unknown parameter(s) {unknown}; known: {list(PARAM_NAMES)}")
        clumps = None
        if any(row.get("clumps") for row in rows):
            k = max(len(row.get("clumps") or []) for row in rows)
            # Rows with fewer clumps are padded with zero-flux clumps (sigma 1", fraction 0).
            clumps = torch.zeros((len(rows), k, 4), dtype=torch.float64, device=device)
            clumps[..., 2] = 1.0
            for i, row in enumerate(rows):
                for j, clump in enumerate(row.get("clumps") or []):
                    clumps[i, j] = torch.tensor([float(v) for v in clump], dtype=torch.float64)
        mix = None
        if any(row.get("clump_mix") for row in rows):
            mix = torch.tensor(
                [float(row.get("clump_mix") or 0.0) for row in rows], dtype=torch.float64, device=device
            )
        params = cls(**columns, clumps=clumps, clump_mix=mix)
        params.validate()
        return params

    @classmethod
    def from_tensors(cls, values: Mapping[str, Any], device: str | torch.device = "cpu") -> ArcParams:
        missing = [n for n in PARAM_NAMES if n not in values]
        if missing:
            raise PhysicsError(f"missing parameter(s) {missing}")
        columns = {
            n: torch.as_tensor(values[n], dtype=torch.float64, device=device).reshape(-1) for n in PARAM_NAMES
        }
        clumps, mix = values.get("clumps"), values.get("clump_mix")
        params = cls(
            **columns,
            clumps=None if clumps is None else torch.as_tensor(clumps, dtype=torch.float64, device=device),
            clump_mix=None
            if mix is None
            else torch.as_tensor(mix, dtype=torch.float64, device=device).reshape(-1),
        )
        params.validate()
        return params

    def validate(self) -> None:
        n = len(self)
        for name in PARAM_NAMES:
            value = getattr(self, name)
            if value.shape != (n,):
                raise PhysicsError(f"parameter {name} has shape {tuple(value.shape)}, expected ({n},)")
            unit, rule, check = RULES[name]
            bad = ~torch.isfinite(value)
            if check is not None:
                bad |= ~check(value)
            if name in ("gamma1", "gamma2"):
                bad |= value.abs() >= 1
            if bool(bad.any()):
                i = int(torch.nonzero(bad)[0])
                unit_text = f" {unit}" if unit else ""
                raise PhysicsError(f"row {i}: {name}={float(value[i])!r}{unit_text} is invalid; rule: {rule}")
        if self.clumps is not None:
            if self.clumps.ndim != 3 or self.clumps.shape[0] != n or self.clumps.shape[2] != 4:
                raise PhysicsError(
                    f"clumps must be (N, K, 4) (dx, dy, sigma, fraction), got {tuple(self.clumps.shape)}"
                )
            if not bool(torch.isfinite(self.clumps).all()):
                raise PhysicsError("clumps hold non-finite values")
            if bool((self.clumps[..., 2] <= 0).any()):
                raise PhysicsError("clump sigma must be > 0 arcsec")
            frac = self.clumps[..., 3]
            if bool((frac < 0).any()):
                raise PhysicsError("clump flux fractions (weights) must be >= 0")
            gaussian = self.team_clump_rows().logical_not()
            if bool((frac.sum(-1)[gaussian] >= 1).any()):
                raise PhysicsError("clump flux fractions must sum to < 1")
        if self.clump_mix is not None:
            mix = self.clump_mix
            if mix.shape != (n,):
                raise PhysicsError(f"clump_mix has shape {tuple(mix.shape)}, expected ({n},)")
            bad = ~torch.isfinite(mix) | (mix < 0) | (mix > 0.9)
            if bool(bad.any()):
                i = int(torch.nonzero(bad)[0])
                raise PhysicsError(f"row {i}: clump_mix={float(mix[i])!r} is invalid; rule: in [0, 0.9]")
            if bool((mix > 0).any()) and self.clumps is None:
                raise PhysicsError("clump_mix is set but there are no clumps to mix in")

    def team_clump_rows(self) -> torch.Tensor:
        """(N,) bool: rows whose clumps follow the team's mixing model (clump_mix > 0)."""
        if self.clump_mix is None:
            return torch.zeros(len(self), dtype=torch.bool, device=self.theta_e.device)
        return self.clump_mix > 0

    def to(self, device: str | torch.device) -> ArcParams:
        columns = {n: getattr(self, n).to(device) for n in PARAM_NAMES}
        return ArcParams(
            **columns,
            clumps=None if self.clumps is None else self.clumps.to(device),
            clump_mix=None if self.clump_mix is None else self.clump_mix.to(device),
        )

    def slice(self, start: int, stop: int) -> ArcParams:
        return self.take(slice(start, stop))

    def take(self, rows: builtins.slice | torch.Tensor) -> ArcParams:
        """The injections at ``rows`` (a slice or an index tensor)."""
        columns = {n: getattr(self, n)[rows] for n in PARAM_NAMES}
        return ArcParams(
            **columns,
            clumps=None if self.clumps is None else self.clumps[rows],
            clump_mix=None if self.clump_mix is None else self.clump_mix[rows],
        )

    def mags(self) -> torch.Tensor:
        """(N, 3) unlensed AB magnitudes in g, r, z."""
        return torch.stack([self.mag_g, self.mag_r, self.mag_z], dim=1)

    def psf_fwhm(self) -> torch.Tensor:
        """(N, 3) PSF FWHM in arcsec for g, r, z."""
        return torch.stack([self.psf_fwhm_g, self.psf_fwhm_r, self.psf_fwhm_z], dim=1)

    @classmethod
    def concat(cls, parts: list[ArcParams]) -> ArcParams:
        """One ArcParams of several, in order (clumps padded with zero-flux clumps)."""
        if not parts:
            raise PhysicsError("nothing to join")
        columns = {n: torch.cat([getattr(p, n) for p in parts]) for n in PARAM_NAMES}
        clumps = None
        if any(p.clumps is not None for p in parts):
            k = max(p.clumps.shape[1] for p in parts if p.clumps is not None)
            padded = []
            for p in parts:
                block = torch.zeros((len(p), k, 4), dtype=torch.float64, device=p.theta_e.device)
                block[..., 2] = 1.0  # zero-flux padding clumps, sigma 1"
                if p.clumps is not None:
                    block[:, : p.clumps.shape[1]] = p.clumps
                padded.append(block)
            clumps = torch.cat(padded)
        mix = None
        if any(p.clump_mix is not None for p in parts):
            mix = torch.cat(
                [p.clump_mix if p.clump_mix is not None else torch.zeros_like(p.theta_e) for p in parts]
            )
        return cls(**columns, clumps=clumps, clump_mix=mix)

    def records(self) -> list[dict[str, float]]:
        return [{n: float(getattr(self, n)[i]) for n in PARAM_NAMES} for i in range(len(self))]

    def clump_records(self) -> list[dict[str, Any]]:
        """Each row's clumps and mixing fraction as plain lists (for JSON and the wire)."""
        rows: list[dict[str, Any]] = []
        for i in range(len(self)):
            clumps = [] if self.clumps is None else [c for c in self.clumps[i].tolist() if c[3] > 0]
            mix = 0.0 if self.clump_mix is None else float(self.clump_mix[i])
            rows.append({"clumps": clumps, "clump_mix": mix})
        return rows


#: The lens-side parameters of "no lens": an unlensed source (galaxies, stars in mocks).
NO_LENS: dict[str, float] = {
    "theta_e": 0.0,
    "q_lens": 1.0,
    "phi_lens": 0.0,
    "lens_x": 0.0,
    "lens_y": 0.0,
    "gamma1": 0.0,
    "gamma2": 0.0,
}


def psf_fields(fwhm: Iterable[float]) -> dict[str, float]:
    """The psf_fwhm_g/r/z parameters from (g, r, z) FWHM in arcsec."""
    g, r, z = (float(v) for v in fwhm)
    return {"psf_fwhm_g": g, "psf_fwhm_r": r, "psf_fwhm_z": z}


def example_arc() -> dict[str, float]:
    """One valid lensed arc (warm-up renders, smoke checks): theta_E 1", a compact source."""
    return {
        "theta_e": 1.0, "q_lens": 0.8, "phi_lens": 0.0, "lens_x": 0.0, "lens_y": 0.0,
        "gamma1": 0.0, "gamma2": 0.0, "src_x": 0.1, "src_y": 0.0, "r_e": 0.2, "n_sersic": 1.0,
        "q_src": 0.8, "phi_src": 0.0, "mag_g": 23.0, "mag_r": 22.0, "mag_z": 21.5,
        **psf_fields((1.2, 1.1, 1.0)),
    }  # fmt: skip


def flux_nmgy(mag: torch.Tensor) -> torch.Tensor:
    """AB magnitude -> flux in nanomaggies: 10^(-0.4 (m - 22.5))."""
    return torch.pow(10.0, -0.4 * (mag - 22.5))
