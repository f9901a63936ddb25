"""Injection priors: the team's ``injection_priors.yaml`` schema is lenscal's own.

Sampling is per injection: injection ``i`` of cell ``c`` in run seed ``s`` draws from its
own generator (lenscal.rng.injection_rng, keyed by ``(s, c, i)``), so any
single injection can be regenerated alone, and adding cells never shifts another cell's
draws. Conventions of the drawn parameters: see lenscal.physics.params.

Definitions (from the team's engine, dhs/injection_engine.py, and docs/science.md). Where the
team's file could be read two ways, the default is what the team's engine did, and the
other reading is a named option:
- source r mag U(r_mag_range); g = r + N(g-r); z = r - N(r-z);
- beta_frac = sqrt(U(lo^2, hi^2)) (area-weighted), source at beta_frac * theta_E from the
  lens centre in a uniformly random direction;
- R_e U(re_arcsec_range), n U(n_range), q_src U(q_range), phi_src U(0, pi).
  ``source_params.re_definition``: ``major_axis`` (default; the team's engine measured R_e
  along the major axis, radius ``sqrt(x'^2 + y'^2/q^2)``) or ``circularised``
  (lenstronomy's ``sqrt(q x'^2 + y'^2/q)``, the renderer's own convention). A major-axis
  R_e is rendered as the circularised ``sqrt(q_src) R_e``; the truth table keeps both;
- lens: q_lens U(q_lens_range), phi_lens U(0, pi), centre jitter N(0, center_sigma) per
  axis. ``lens_params.shear``: ``components`` (default; gamma1, gamma2 each N(0,
  shear_sigma), as the team's engine drew them, mean |gamma| = sigma sqrt(pi/2)) or
  ``half_normal_magnitude`` (|gamma| half-normal(shear_sigma) at a uniform angle, as the
  team's file comment says);
- IM2 (host-conditioned): q_lens = clip(q_host + N(0, q_scatter), q_floor, 1), phi_lens =
  the host's major axis, |gamma| U(0, gamma_max) at a uniform angle (the team's
  map_host_to_lens_params), centre jitter as above;
- clumps with probability clumps_prob: ``integers(*clumps_n_range)`` clumps (numpy's
  half-open [low, high), as the team's engine drew them: [1, 4] gives 1-3), and by
  ``source_params.clump_model``:
  ``gaussian`` (default): total flux fraction U(clumps_frac_range) split by a flat
  Dirichlet, Gaussian sigma U(0.05, 0.15) arcsec, centres uniform within R_e: flux conserved;
  ``team`` (the team's ``_add_clumps``, engine before 2026-02-16): mixing fraction
  m ~ U(clumps_frac_range), centres N(0, 0.6 R_e) along the source's major axis and
  N(0, 0.6 R_e q) along its minor axis (R_e along the major axis), sigma = clip(0.25 R_e,
  0.02, 0.15) arcsec, weights U(0, 1) normalised to sum 1; rendered at pixel resolution and
  mixed as ``(1 - m) U + m (mean U + std U * C / max C)`` (lenscal.physics.params.ArcParams:
  flux not conserved).
(The team's engine used b_n = 2n - 1/3; lenscal's exact b_n keeps R_e a true half-light
radius and is kept.)

Built-in priors (``PRIORS``): ``default`` (the team's corrected priors of 2026-02-16, their
``injection_priors.yaml``: for new runs) and ``team_d01_d05`` (the engine's defaults before
the 2026-02-16 fixes, which the team's D01-D05 and E04 ran with, as their
run_d06_corrected_priors.sh records).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lenscal.errors import LenscalError
from lenscal.home import config_search_path, find_config, read_yaml
from lenscal.physics.params import ArcParams
from lenscal.rng import injection_rng
from lenscal.validation import validated


class PriorError(LenscalError):
    """An injection prior file or request is invalid."""


def _range(lo: float, hi: float, name: str) -> tuple[float, float]:
    if not lo <= hi:
        raise ValueError(f"{name} must be [low, high] with low <= high, got [{lo}, {hi}]")
    return lo, hi


class SourcePrior(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    r_mag_range: tuple[float, float] = (23.0, 26.0)
    beta_frac_range: tuple[float, float] = (0.10, 0.40)
    re_arcsec_range: tuple[float, float] = (0.15, 0.50)
    n_range: tuple[float, float] = (0.5, 2.0)
    q_range: tuple[float, float] = (0.3, 1.0)
    g_minus_r_mu_sigma: tuple[float, float] = (1.15, 0.30)
    r_minus_z_mu_sigma: tuple[float, float] = (0.85, 0.20)
    clumps_prob: float = Field(0.0, ge=0.0, le=1.0)
    clumps_n_range: tuple[int, int] = (1, 4)
    clumps_frac_range: tuple[float, float] = (0.15, 0.45)
    clump_model: Literal["gaussian", "team"] = "gaussian"
    re_definition: Literal["major_axis", "circularised"] = "major_axis"

    @model_validator(mode="after")
    def _ranges(self) -> SourcePrior:
        for name in (
            "r_mag_range",
            "beta_frac_range",
            "re_arcsec_range",
            "n_range",
            "q_range",
            "clumps_frac_range",
        ):
            low, high = getattr(self, name)
            _range(low, high, name)
        if self.re_arcsec_range[0] <= 0 or not 0 < self.q_range[0] <= self.q_range[1] <= 1:
            raise ValueError("re_arcsec_range must be > 0 and q_range within (0, 1]")
        if self.clumps_frac_range[1] >= 1:
            raise ValueError("clumps_frac_range must stay below 1")
        if self.clump_model == "team" and self.clumps_frac_range[1] > 0.9:
            raise ValueError("clumps_frac_range: the team's clump model mixes at most 0.9")
        low, high = self.clumps_n_range
        if not 1 <= low < high:
            raise ValueError(
                "clumps_n_range must be [low, high) with 1 <= low < high (numpy integers), "
                f"got [{low}, {high}]"
            )
        return self


class LensPrior(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    shear_sigma: float = Field(0.05, ge=0.0)
    shear: Literal["components", "half_normal_magnitude"] = "components"
    center_sigma_arcsec: float = Field(0.05, ge=0.0)
    q_lens_range: tuple[float, float] = (0.5, 1.0)

    @model_validator(mode="after")
    def _ranges(self) -> LensPrior:
        lo, hi = _range(*self.q_lens_range, "q_lens_range")
        if not 0 < lo <= hi <= 1:
            raise ValueError("q_lens_range must lie within (0, 1]")
        return self


class Model2Conditioning(BaseModel):
    """IM2: q_lens = clip(q_host + N(0, q_scatter), q_floor, 1); phi_lens = host PA;
    |gamma| U(0, gamma_max) at a uniform angle."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    q_scatter: float = Field(0.05, ge=0.0)
    q_floor: float = Field(0.5, gt=0.0, le=1.0)
    gamma_max: float = Field(0.08, ge=0.0, lt=1.0)


class PreprocessingNote(BaseModel):
    """The team's file records the preprocessing its models used; kept for reference only
    (the model's own PreprocessSpec always wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    annulus_r_in: float = 20.0
    annulus_r_out: float = 32.0
    clip_range: float = 10.0


class InjectionPrior(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "default"
    source_params: SourcePrior = SourcePrior()
    lens_params: LensPrior = LensPrior()
    model2_conditioning: Model2Conditioning = Model2Conditioning()
    preprocessing: PreprocessingNote | None = None

    def with_overrides(
        self, overrides: Mapping[str, Any], *, source: str = "prior overrides"
    ) -> InjectionPrior:
        """A copy with ``overrides`` merged in section by section, e.g.
        ``{"source_params": {"beta_frac_range": [0.1, 1.0]}}``; validated like a prior file
        (an unknown key is an error naming it)."""
        merged = self.model_dump(mode="json")
        for section, values in overrides.items():
            if isinstance(values, Mapping) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
        return validated(InjectionPrior, merged, error=PriorError, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> InjectionPrior:
        p = Path(path)
        raw = read_yaml(p, what="prior file", error=PriorError)
        raw.setdefault("name", p.stem)
        return validated(cls, raw, error=PriorError, source=str(p))


def sample_params(
    prior: InjectionPrior,
    theta_e: Sequence[float] | np.ndarray,
    psf_fwhm: np.ndarray,
    *,
    seed: int,
    cell: str = "",
    indices: Sequence[int] | None = None,
    host_q: Sequence[float] | np.ndarray | None = None,
    host_phi: Sequence[float] | np.ndarray | None = None,
) -> ArcParams:
    """Draw one parameter set per injection.

    ``theta_e``: Einstein radius per injection (arcsec, from the grid cell). ``psf_fwhm``:
    (N, 3) g, r, z FWHM (arcsec, from each host). ``host_q``/``host_phi``: IM2's host axis
    ratio and position angle (rad, image convention of lenscal.injection.hosts), which
    condition q_lens and set phi_lens.
    """
    theta = np.asarray(theta_e, dtype=np.float64).reshape(-1)
    n = theta.size
    fwhm = np.asarray(psf_fwhm, dtype=np.float64).reshape(n, 3)
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise PriorError(f"indices has {len(idx)} entries for {n} injections")
    if (host_q is None) != (host_phi is None):
        raise PriorError("host_q and host_phi go together (IM2 conditioning)")
    sp, lp, m2 = prior.source_params, prior.lens_params, prior.model2_conditioning
    rows: list[dict[str, Any]] = []
    for k in range(n):
        rng = injection_rng(seed, cell, idx[k])
        # Fixed draw order: never reorder, or every stored run changes.
        q_lens = rng.uniform(*lp.q_lens_range)
        phi_lens = rng.uniform(0.0, np.pi)
        lens_x, lens_y = rng.normal(0.0, lp.center_sigma_arcsec, 2)
        if lp.shear == "components":
            gamma1, gamma2 = rng.normal(0.0, lp.shear_sigma, 2)
        else:
            gamma, gamma_angle = abs(rng.normal(0.0, lp.shear_sigma)), rng.uniform(0.0, np.pi)
            gamma1, gamma2 = gamma * np.cos(2 * gamma_angle), gamma * np.sin(2 * gamma_angle)
        lo, hi = sp.beta_frac_range
        beta = np.sqrt(rng.uniform(lo**2, hi**2)) * theta[k]
        beta_angle = rng.uniform(0.0, 2.0 * np.pi)
        r_e = rng.uniform(*sp.re_arcsec_range)
        n_sersic = rng.uniform(*sp.n_range)
        q_src = rng.uniform(*sp.q_range)
        phi_src = rng.uniform(0.0, np.pi)
        mag_r = rng.uniform(*sp.r_mag_range)
        g_r = rng.normal(*sp.g_minus_r_mu_sigma)
        r_z = rng.normal(*sp.r_minus_z_mu_sigma)
        scatter = rng.normal(0.0, m2.q_scatter)
        im2_gamma, im2_angle = rng.uniform(0.0, m2.gamma_max), rng.uniform(0.0, np.pi)
        clumps, clump_mix = None, 0.0
        if rng.uniform() < sp.clumps_prob:
            count = int(rng.integers(*sp.clumps_n_range))
            if sp.clump_model == "team":
                major = r_e if sp.re_definition == "major_axis" else r_e / np.sqrt(q_src)
                clumps, clump_mix = _team_clumps(rng, count, sp.clumps_frac_range, major, q_src, phi_src)
            else:
                total = rng.uniform(*sp.clumps_frac_range)
                weights = rng.dirichlet(np.ones(count)) * total
                radius = r_e * np.sqrt(rng.uniform(0.0, 1.0, count))
                angle = rng.uniform(0.0, 2.0 * np.pi, count)
                sigma = rng.uniform(0.05, 0.15, count)
                clumps = np.stack(
                    [radius * np.cos(angle), radius * np.sin(angle), sigma, weights], axis=1
                ).tolist()
        if host_q is not None and host_phi is not None:
            q_lens = float(np.clip(float(host_q[k]) + scatter, m2.q_floor, 1.0))
            phi_lens = float(host_phi[k])
            gamma1, gamma2 = im2_gamma * np.cos(2 * im2_angle), im2_gamma * np.sin(2 * im2_angle)
        if sp.re_definition == "major_axis":
            r_e *= np.sqrt(q_src)  # the same profile in the renderer's circularised radius
        rows.append(
            {
                "theta_e": theta[k],
                "q_lens": q_lens,
                "phi_lens": phi_lens,
                "lens_x": lens_x,
                "lens_y": lens_y,
                "gamma1": gamma1,
                "gamma2": gamma2,
                "src_x": lens_x + beta * np.cos(beta_angle),
                "src_y": lens_y + beta * np.sin(beta_angle),
                "r_e": r_e,
                "n_sersic": n_sersic,
                "q_src": q_src,
                "phi_src": phi_src,
                "mag_g": mag_r + g_r,
                "mag_r": mag_r,
                "mag_z": mag_r - r_z,
                "psf_fwhm_g": fwhm[k, 0],
                "psf_fwhm_r": fwhm[k, 1],
                "psf_fwhm_z": fwhm[k, 2],
                "clumps": clumps,
                "clump_mix": clump_mix,
            }
        )
    return ArcParams.from_records(rows)


def _team_clumps(
    rng: np.random.Generator,
    count: int,
    mix_range: tuple[float, float],
    r_e_major: float,
    q_src: float,
    phi_src: float,
) -> tuple[list[list[float]], float]:
    """The team's clump draw (``_add_clumps``): offsets N(0, 0.6 R_e) along the major axis and
    N(0, 0.6 R_e q) along the minor one, rotated to the sky by phi_src; one width
    clip(0.25 R_e, 0.02, 0.15) arcsec; weights U(0, 1) / their sum (+1e-8, as theirs).
    ``r_e_major``: the half-light radius along the major axis, arcsec."""
    mix = float(rng.uniform(*mix_range))
    along = rng.normal(0.0, 1.0, count) * 0.6 * r_e_major
    across = rng.normal(0.0, 1.0, count) * 0.6 * r_e_major * q_src
    cos, sin = np.cos(phi_src), np.sin(phi_src)
    sigma = float(np.clip(0.25 * r_e_major, 0.02, 0.15))
    weights = rng.uniform(0.0, 1.0, count)
    weights = weights / (weights.sum() + 1e-8)
    clumps = np.stack(
        [cos * along - sin * across, sin * along + cos * across, np.full(count, sigma), weights], axis=1
    )
    return clumps.tolist(), mix


#: The built-in prior: the schema's defaults, the team's corrected priors of 2026-02-16 (their
#: injection_priors.yaml). Others are files, by name on the config search path
#: (configs/injection/<name>.yaml: team_d01_d05, d05_unrestricted_beta) or by path.
PRIORS: dict[str, InjectionPrior] = {"default": InjectionPrior(name="default")}


def named_prior(name: str) -> InjectionPrior | None:
    """A prior by name only (built-in, or configs/injection/<name>.yaml on the config search
    path); None when there is none. A service's requests reach priors this way, never by path."""
    if name in PRIORS:
        return PRIORS[name]
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) is None:
        return None
    found = find_config("injection", name)
    if found is None:
        return None
    stat = found.stat()
    return _prior_file(str(found.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _prior_file(path: str, _mtime_ns: int, _size: int) -> InjectionPrior:
    """A prior file, read once while it is unchanged: grids ask for their prior every chunk."""
    return InjectionPrior.from_yaml(path)


def get_prior(name_or_path: str) -> InjectionPrior:
    """A prior by name (``named_prior``) or a YAML file."""
    prior = named_prior(name_or_path)
    if prior is not None:
        return prior
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return InjectionPrior.from_yaml(path)
    looked = ", ".join(str(d) for d in config_search_path("injection"))
    raise PriorError(
        f"unknown prior {name_or_path!r}: not a built-in ({sorted(PRIORS)}), not in {looked}, "
        "and not a YAML file"
    )
