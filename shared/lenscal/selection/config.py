"""Grid definitions: YAML files (``configs/grids/<name>.yaml``) validated by ``GridConfig``.

A grid names its axes (Einstein radius, r-band PSF FWHM, r-band 5-sigma depth), injections
per cell, injection model (IM1 / IM2), prior, seed and what a run measures (thresholds, FPR
targets, magnitude bins); optional treatments (Poisson noise, a preprocessing override)
make the team's variants (D04's +Poisson, +Poisson + clip 20).

Two grids are comparable when their *geometry* agrees: the axes, injections per cell,
magnitude bins, thresholds and host split. Everything else (injection model, prior,
treatments, seed, checkpoint) is what a comparison compares.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lenscal.errors import LenscalError
from lenscal.home import FULL, apply_preset, read_config
from lenscal.injection.priors import InjectionPrior, get_prior
from lenscal.preprocess import PreprocessOverride
from lenscal.validation import validated
from lenscal.workspace import canonical_sha256

#: Fields that must agree for two grid results to be compared.
GEOMETRY = (
    "axes",
    "per_cell",
    "source_mag_bins",
    "lensed_mag_bins",
    "thresholds",
    "fpr_targets",
    "split",
    "host_max",
    "host_binning",
    "fpr_negatives_max",
)


#: Bins per axis: far beyond any survey grid (d05 has 11 x 7 x 5), small enough that a typo
#: in step (1e-9) is refused instead of planning billions of cells.
MAX_BINS = 1000


class GridError(LenscalError):
    """A grid definition or a grid run request is invalid."""


class Axis(BaseModel):
    """Bin centres start, start + step, ..., stop (inclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    start: float = Field(allow_inf_nan=False)
    stop: float = Field(allow_inf_nan=False)
    step: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Axis:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) is below start ({self.start})")
        bins = (self.stop - self.start) / self.step + 1
        if bins > MAX_BINS:
            raise ValueError(f"{bins:.3g} bins from start, stop and step; at most {MAX_BINS} per axis")
        return self

    def centres(self) -> np.ndarray:
        count = round((self.stop - self.start) / self.step) + 1
        return np.round(self.start + self.step * np.arange(count), 10)


class Axes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    theta_e: Axis = Field(description="Einstein radius, arcsec")
    psf_fwhm: Axis = Field(description="r-band PSF FWHM (psfsize_r), arcsec")
    depth: Axis = Field(description="r-band 5-sigma point-source depth (from psfdepth_r), AB mag")


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    description: str = ""
    #: The preset it was loaded at: a label for titles and badges, not part of the definition
    #: (a preset only changes keys that are).
    preset: str = FULL
    axes: Axes
    per_cell: int = Field(ge=1, le=100_000)
    injection_model: Literal["IM1", "IM2"] = "IM1"
    prior: str = "default"
    seed: int = Field(0, ge=0)
    split: str = "val"
    #: Hosts drawn from the pool before binning (None: all), DataFrame.sample(random_state=seed)
    #: as the team's selection_function_grid.py (--host-max 20000 in D03-D05).
    host_max: int | None = Field(None, ge=1)
    #: How hosts join PSF x depth bins (lenscal.selection.plan): the team's ``nearest`` (no
    #: range limit) or ``within_half_step``.
    host_binning: Literal["nearest", "within_half_step"] = "within_half_step"
    #: Validation negatives the FPR thresholds rest on (None: all), drawn like host_max (the
    #: team's derive_fpr_thresholds: max_negatives 50,000).
    fpr_negatives_max: int | None = Field(None, ge=1)
    source_mag_bins: tuple[float, ...] = (23.0, 24.0, 25.0, 26.0)  # unlensed r, AB
    lensed_mag_bins: tuple[float, ...] = (18.0, 20.0, 22.0, 24.0, 27.0)  # r AB of the arc, the team's
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    fpr_targets: tuple[float, ...] = (1e-3, 1e-4)
    #: An FPR threshold must rest on at least this many negatives x (1 / target FPR), i.e. on
    #: this many negatives scoring at or above it; fewer is refused unless forced.
    min_false_positives: int = Field(10, ge=1)
    poisson_gain: float | None = Field(None, gt=0, description="e-/nmgy; None: noiseless arcs")
    #: Sensitivity perturbations: merged into the prior section by section (InjectionPrior
    #: .with_overrides), and a factor on each host's PSF FWHM used for rendering (binning
    #: still uses the host's own psfsize_r).
    prior_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    psf_scale: float = Field(1.0, gt=0.0, le=10.0)
    preprocess_override: PreprocessOverride | None = None
    run_id: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> GridConfig:
        for name in ("source_mag_bins", "lensed_mag_bins"):
            edges = getattr(self, name)
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"{name} must be at least two increasing edges")
        if any(not 0 < t < 1 for t in self.thresholds) or any(not 0 < f < 1 for f in self.fpr_targets):
            raise ValueError("thresholds and fpr_targets must lie in (0, 1)")
        return self

    def prior_model(self) -> InjectionPrior:
        prior = get_prior(self.prior)
        return (
            prior.with_overrides(self.prior_overrides, source="prior_overrides")
            if self.prior_overrides
            else prior
        )

    def definition(self) -> dict[str, Any]:
        """Everything that decides a run's numbers (the prior by content, not by name)."""
        data = self.model_dump(mode="json", exclude={"name", "description", "run_id", "preset"})
        prior = self.prior_model().model_dump(mode="json")
        data["prior"] = {"name": self.prior, "sha256": canonical_sha256(prior)}
        return data

    def geometry(self) -> dict[str, Any]:
        return {k: v for k, v in self.definition().items() if k in GEOMETRY}

    def cells(self) -> list[tuple[float, float, float]]:
        """(theta_E, PSF FWHM, depth) of every cell, theta_E slowest."""
        a = self.axes
        return [
            (t, p, d) for t in a.theta_e.centres() for p in a.psf_fwhm.centres() for d in a.depth.centres()
        ]


def cell_name(theta_e: float, psf: float, depth: float) -> str:
    """The name a cell's random streams are keyed by."""
    return f"te{theta_e:.3f}_psf{psf:.3f}_m5{depth:.3f}"


def load_grid(name_or_path: str | Path, preset: str = FULL, **overrides: Any) -> GridConfig:
    """A grid by file path or by name (``configs/grids/<name>.yaml`` in $LENSCAL_CONFIGS,
    ./configs or lenscal's source tree) at ``preset`` (full: as written; others from its
    ``presets`` section, e.g. demo: fewer injections per cell); ``overrides`` replace
    top-level keys."""
    path, raw = read_config("grids", name_or_path, what="grid", error=GridError)
    raw = {**apply_preset(raw, preset, source=str(path), error=GridError), "preset": preset}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return validated(GridConfig, raw, error=GridError, source=str(path))
