"""The selection function as an object: what a finished grid run measured, loadable,
queryable at any point, weighted by a population, exportable and carrying its provenance.

``SelectionFunction.load(grid_dir)`` reads a complete grid run (meta.json, metrics.json,
cells.csv; injections.parquet when a magnitude axis is asked for). Axes and units:

- ``theta_e``: Einstein radius, arcsec (SIE, the injector's convention);
- ``psf_fwhm``: r-band PSF FWHM of the host (Tractor ``psfsize_r``), arcsec;
- ``depth``: r-band 5-sigma point-source depth, AB mag (``m5_from_psfdepth(psfdepth_r)``);
- optionally ``source_mag`` (unlensed source r, AB) or ``lensed_mag`` (the arc's total r,
  AB), binned at the grid's own magnitude bin edges.

A cell covers its centre +- half a step on each grid axis (the grid's ``within_half_step``
host binning); a magnitude bin covers [low, high) (the last one closed).

``completeness(...)`` answers for arrays of points. ``nearest`` (default) is the cell the point
lies in: its k/n and Jeffreys interval, exactly the grid's cell. ``linear`` interpolates the
completeness and each interval bound multilinearly between cell centres; in the outer half
of an edge cell the edge centre's value holds (no slope is extended past the last centre).
A point outside every cell is NaN with ``outside`` set, never extrapolated; a point whose
cell (or, linear, any cell it leans on) has no injections is NaN with ``no_data`` set.

``marginal(by, weights=...)`` pools cells into bins of ``by``. Without weights each cell
counts by its injections (sum k / sum n: the grid's own pooled marginal). With population
weights w_c (e.g. the PSF x depth distribution of a survey, or a theta_E distribution),
the estimate is sum_c W_c k_c / n_c over the cells with data (W normalised in each bin) and
its interval is Jeffreys on effective counts: n_eff = 1 / sum_c (W_c^2 / n_c) (Kish's
effective sample size for a weighted mean of binomial fractions, as Korn & Graubard 1998
use it) and k_eff = estimate x n_eff. Equal weights over cells of equal n, or weights
proportional to n, give back exactly the pooled k/n and its interval. The share of the
population weight that falls on cells without data is reported, never silently dropped.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.selection.config import Axis, GridError
from lenscal.selection.tables import bin_labels, is_forced
from lenscal.stats.intervals import jeffreys_bounds
from lenscal.survey import NANOMAGGY_ZEROPOINT_AB

GRID_AXES = ("theta_e", "psf_fwhm", "depth")
#: cells.csv column of each grid axis.
CELL_COLUMNS = {"theta_e": "theta_e_bin", "psf_fwhm": "psf_bin", "depth": "depth_bin"}
#: injections.parquet column and grid-definition bin edges of each magnitude axis.
MAGNITUDE_AXES = {
    "source_mag": ("mag_r", "source_mag_bins"),
    "lensed_mag": ("lensed_mag_r", "lensed_mag_bins"),
}
UNITS = {"theta_e": "arcsec", "psf_fwhm": "arcsec", "depth": "mag", "source_mag": "mag", "lensed_mag": "mag"}
DESCRIPTIONS = {
    "theta_e": "Einstein radius (SIE), arcsec",
    "psf_fwhm": "r-band PSF FWHM of the host (Tractor psfsize_r), arcsec",
    "depth": "r-band 5-sigma point-source depth, AB mag (from Tractor psfdepth_r)",
    "source_mag": "unlensed source r magnitude, AB",
    "lensed_mag": "total r magnitude of the lensed arc, AB",
}
METHODS = ("nearest", "linear")
INTERVAL_METHOD = "Jeffreys: equal-tailed Beta(k + 1/2, n - k + 1/2); 68% and 95%"
WEIGHTED_METHOD = (
    "population-weighted mean of cell fractions; Jeffreys on Kish effective counts "
    "n_eff = 1 / sum(W^2 / n), k_eff = estimate x n_eff"
)


@dataclass(frozen=True)
class FunctionAxis:
    """One axis: bin centres and the [low, high] each bin covers, in ``unit``."""

    name: str
    centres: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def unit(self) -> str:
        return UNITS[self.name]

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]

    @classmethod
    def from_centres(cls, name: str, centres: np.ndarray, step: float) -> FunctionAxis:
        c = np.asarray(centres, dtype=np.float64)
        return cls(name, c, np.round(c - step / 2, 10), np.round(c + step / 2, 10))

    @classmethod
    def from_edges(cls, name: str, edges: Sequence[float]) -> FunctionAxis:
        e = np.asarray(edges, dtype=np.float64)
        return cls(name, (e[:-1] + e[1:]) / 2, e[:-1], e[1:])

    def locate(self, values: np.ndarray) -> np.ndarray:
        """The bin index of each value, -1 outside (or not finite). A value on the edge two
        bins share goes to the upper bin; the outer edges are inside."""
        v = np.asarray(values, dtype=np.float64)
        index = np.searchsorted(self.low, v, side="right") - 1
        inside = np.isfinite(v) & (index >= 0)
        index = np.where(inside, index, 0)
        inside &= v <= self.high[index]
        return np.where(inside, index, -1)

    def position(self, values: np.ndarray) -> np.ndarray:
        """Fractional index between centres (clamped to the outer centres), for linear
        interpolation; NaN outside."""
        v = np.asarray(values, dtype=np.float64)
        inside = self.locate(v) >= 0
        if self.centres.size == 1:
            return np.where(inside, 0.0, np.nan)
        pos = np.interp(v, self.centres, np.arange(self.centres.size, dtype=np.float64))
        return np.where(inside, pos, np.nan)


@dataclass
class Completeness:
    """The answer at N points (arrays of length N)."""

    threshold: str
    method: str
    estimate: np.ndarray
    low68: np.ndarray
    high68: np.ndarray
    low95: np.ndarray
    high95: np.ndarray
    k: np.ndarray  # the cell's counts (nearest); NaN for linear
    n: np.ndarray
    outside: np.ndarray  # bool: beyond the grid on some axis
    no_data: np.ndarray  # bool: the cell(s) it rests on have no injections
    flag: np.ndarray  # "" or why the estimate is NaN

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "completeness": self.estimate,
                "jeffreys68_low": self.low68,
                "jeffreys68_high": self.high68,
                "jeffreys95_low": self.low95,
                "jeffreys95_high": self.high95,
                "k": self.k,
                "n": self.n,
                "outside": self.outside,
                "no_data": self.no_data,
                "flag": self.flag,
            }
        )


@dataclass
class Weights:
    """Population weights over the function's cells (an array of its shape) and what of the
    population they could not place."""

    values: np.ndarray
    sample_size: int = 0
    outside: int = 0  # members of the sample beyond the grid (not in values)
    source: str = ""


@dataclass
class SelectionFunction:
    axes: list[FunctionAxis]
    k: dict[str, np.ndarray]  # threshold label -> counts detected, shape of the axes
    n: np.ndarray  # injections per cell (the same at every threshold)
    thresholds: dict[str, float]  # label -> probability threshold value
    provenance: dict[str, Any] = field(default_factory=dict)

    # --- loading ------------------------------------------------------------------------

    @classmethod
    def load(cls, grid_dir: str | Path, magnitude: str | None = None) -> SelectionFunction:
        """A complete grid run's selection function over theta_E x PSF FWHM x depth, with a
        fourth axis ``magnitude`` (``source_mag`` or ``lensed_mag``) when asked."""
        from lenscal.selection.compare import read_run

        directory = Path(grid_dir)
        meta = read_run(directory)
        metrics = json.loads((directory / "metrics.json").read_text())
        thresholds = {str(k): float(v) for k, v in metrics["thresholds"].items()}
        definition = meta["definition"]
        grid_axes = {name: Axis(**definition["axes"][name]) for name in GRID_AXES}
        axes = [FunctionAxis.from_centres(name, a.centres(), a.step) for name, a in grid_axes.items()]
        if magnitude is None:
            k, n = _cell_counts(directory / "cells.csv", axes, thresholds)
        elif magnitude in MAGNITUDE_AXES:
            column, edges = MAGNITUDE_AXES[magnitude]
            axes.append(FunctionAxis.from_edges(magnitude, definition[edges]))
            k, n = _injection_counts(directory / "injections.parquet", axes, column, thresholds)
        else:
            raise GridError(f"unknown magnitude axis {magnitude!r}; known: {', '.join(MAGNITUDE_AXES)}")
        return cls(axes, k, n, thresholds, provenance(directory, meta, metrics))

    # --- points -------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.centres.size for a in self.axes)

    @property
    def axis_names(self) -> list[str]:
        return [a.name for a in self.axes]

    def axis(self, name: str) -> FunctionAxis:
        for a in self.axes:
            if a.name == name:
                return a
        raise GridError(f"no axis {name!r}; this selection function has {', '.join(self.axis_names)}")

    def counts(self, threshold: str) -> np.ndarray:
        if threshold not in self.k:
            raise GridError(f"no threshold {threshold!r} in this grid run; it has {', '.join(self.k)}")
        return self.k[threshold]

    def completeness(
        self,
        theta_e: Any,
        psf_fwhm: Any,
        depth: Any,
        *,
        threshold: str,
        magnitude: Any = None,
        method: str = "nearest",
    ) -> Completeness:
        """Completeness at points (theta_E arcsec, PSF FWHM arcsec, depth AB mag[, magnitude
        AB]); arrays broadcast together. See the module docstring for the methods."""
        if method not in METHODS:
            raise GridError(f"unknown interpolation {method!r}; known: {', '.join(METHODS)}")
        values = [theta_e, psf_fwhm, depth]
        if len(self.axes) == 4:
            if magnitude is None:
                raise GridError(f"this selection function has a {self.axes[3].name} axis: give magnitude")
            values.append(magnitude)
        elif magnitude is not None:
            raise GridError("this selection function has no magnitude axis (load it with magnitude=...)")
        points = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in np.broadcast_arrays(*values)]
        k = self.counts(threshold)
        if method == "nearest":
            return self._nearest(points, k, threshold)
        return self._linear(points, k, threshold)

    def _nearest(self, points: list[np.ndarray], k: np.ndarray, threshold: str) -> Completeness:
        index = [a.locate(p) for a, p in zip(self.axes, points, strict=True)]
        outside = np.any([i < 0 for i in index], axis=0)
        where = tuple(np.where(outside, 0, i) for i in index)
        kk = np.where(outside, np.nan, k[where].astype(np.float64))
        nn = np.where(outside, np.nan, self.n[where].astype(np.float64))
        no_data = ~outside & (nn == 0)
        usable = ~outside & ~no_data
        kk_, nn_ = np.where(usable, kk, 0.0), np.where(usable, nn, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            estimate = np.where(usable, kk_ / np.maximum(nn_, 1), np.nan)
        low68, high68 = jeffreys_bounds(kk_, nn_, 0.68)
        low95, high95 = jeffreys_bounds(kk_, nn_, 0.95)
        flag = self._flags(points, index, no_data)
        return Completeness(
            threshold, "nearest", estimate, low68, high68, low95, high95, kk, nn, outside, no_data, flag
        )

    def _linear(self, points: list[np.ndarray], k: np.ndarray, threshold: str) -> Completeness:
        positions = [a.position(p) for a, p in zip(self.axes, points, strict=True)]
        outside = np.any([np.isnan(p) for p in positions], axis=0)
        n = self.n.astype(np.float64)
        has = n > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            cell_values = [np.where(has, k / np.maximum(n, 1), np.nan)]
        for level in (0.68, 0.95):
            cell_values.extend(jeffreys_bounds(k, n, level))
        size = points[0].size
        sums = [np.zeros(size) for _ in cell_values]
        no_data = np.zeros(size, dtype=bool)
        lower = [np.where(np.isnan(p), 0, np.floor(p)).astype(int) for p in positions]
        frac = [np.where(np.isnan(p), 0.0, p - np.floor(p)) for p in positions]
        for corner in itertools.product((0, 1), repeat=len(self.axes)):
            weight = np.ones(size)
            index = []
            for axis, bit, low, t in zip(self.axes, corner, lower, frac, strict=True):
                weight = weight * (t if bit else 1.0 - t)
                index.append(np.minimum(low + bit, axis.centres.size - 1))
            where = tuple(index)
            leans = (weight > 0) & ~outside
            no_data |= leans & ~has[where]
            for total, values in zip(sums, cell_values, strict=True):
                total += np.where(leans, weight * np.nan_to_num(values[where]), 0.0)
        bad = outside | no_data
        estimate, low68, high68, low95, high95 = (np.where(bad, np.nan, s) for s in sums)
        nan = np.full(size, np.nan)
        index = [a.locate(p) for a, p in zip(self.axes, points, strict=True)]
        flag = self._flags(points, index, no_data & ~outside)
        return Completeness(
            threshold, "linear", estimate, low68, high68, low95, high95, nan, nan.copy(), outside,
            no_data & ~outside, flag,
        )  # fmt: skip

    def _flags(self, points: list[np.ndarray], index: list[np.ndarray], no_data: np.ndarray) -> np.ndarray:
        flags = np.full(points[0].size, "", dtype=object)
        for axis, p, i in zip(self.axes, points, index, strict=True):
            bad = i < 0
            what = np.where(np.isfinite(p), f"outside {axis.name}", f"missing {axis.name}")
            flags = np.where(bad & (flags == ""), what, np.where(bad, flags + "; " + what, flags))
        return np.where(no_data & (flags == ""), "no data", flags)

    # --- populations and marginals ------------------------------------------------------

    def weights_from(self, sample: Mapping[str, Any], source: str = "") -> Weights:
        """Population weights from a sample: its joint histogram over the axes it names
        (e.g. psf_fwhm and depth of every survey object, or theta_e of a lens population),
        spread evenly over the axes it does not. Members beyond the grid are counted in
        ``outside``."""
        unknown = sorted(set(sample) - set(self.axis_names))
        if unknown or not sample:
            raise GridError(
                f"population columns {unknown or '(none)'}: give some of {', '.join(self.axis_names)}"
            )
        named = [a for a in self.axes if a.name in sample]
        index = [a.locate(np.asarray(sample[a.name], dtype=np.float64)) for a in named]
        size = index[0].size
        inside = np.all([i >= 0 for i in index], axis=0) if index else np.ones(size, dtype=bool)
        histogram = np.zeros([a.centres.size for a in named])
        np.add.at(histogram, tuple(i[inside] for i in index), 1.0)
        shape = [a.centres.size if a.name in sample else 1 for a in self.axes]
        values = np.broadcast_to(histogram.reshape(shape), self.shape).astype(np.float64)
        return Weights(values, int(size), int((~inside).sum()), source)

    def marginal(
        self, by: str | Sequence[str], *, threshold: str, weights: Weights | None = None
    ) -> pd.DataFrame:
        """Completeness per bin of ``by`` (one axis name, several, or [] for one overall
        number), pooled over the other axes by injection counts or by ``weights``."""
        names = [by] if isinstance(by, str) else list(by)
        for name in names:
            self.axis(name)
        k = self.counts(threshold).astype(np.float64)
        n = self.n.astype(np.float64)
        keep = [self.axis_names.index(name) for name in names]
        other = tuple(i for i in range(len(self.axes)) if i not in keep)
        has = n > 0
        if weights is None:
            w = n.copy()
        else:
            if weights.values.shape != self.shape:
                raise GridError(f"weights of shape {weights.values.shape}; this function is {self.shape}")
            w = np.asarray(weights.values, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(has, k / np.maximum(n, 1), 0.0)
            total_w = w.sum(axis=other)
            covered_w = np.where(has, w, 0.0).sum(axis=other)
            big_w = np.nan_to_num(np.where(has, w, 0.0) / np.expand_dims(covered_w, other))
            estimate = (big_w * fraction).sum(axis=other)
            variance_factor = np.where(has, big_w**2 / np.maximum(n, 1), 0.0).sum(axis=other)
            n_eff = np.where(variance_factor > 0, 1.0 / variance_factor, 0.0)
        k_eff = np.where(n_eff > 0, estimate * n_eff, 0.0)
        # all or none detected stays exactly that (rounding must not put the estimate
        # outside its own interval, whose ends are 0 and 1 there)
        tolerance = 1e-9 * np.maximum(n_eff, 1.0)
        k_eff = np.where(np.abs(k_eff - n_eff) < tolerance, n_eff, np.where(k_eff < tolerance, 0.0, k_eff))
        if weights is None:  # exactly the pooled counts (no rounding through n_eff)
            k_eff, n_eff = k.sum(axis=other), n.sum(axis=other)
        empty = n_eff == 0
        grids = np.meshgrid(*[self.axes[i].centres for i in keep], indexing="ij") if keep else []
        out = pd.DataFrame(index=pd.RangeIndex(int(np.prod([self.shape[i] for i in keep]))))  # [] -> one row
        for name, values in zip(names, grids, strict=True):
            out[name] = values.ravel()
        out["threshold"] = threshold
        out["k"] = np.ravel(np.where(has, k, 0).sum(axis=other)).astype(np.int64)
        out["n"] = np.ravel(n.sum(axis=other)).astype(np.int64)
        out["completeness"] = np.ravel(np.where(empty, np.nan, k_eff / np.where(empty, 1, n_eff)))
        out["k_effective"], out["n_effective"] = np.ravel(k_eff), np.ravel(n_eff)
        for level, tag in ((0.68, "68"), (0.95, "95")):
            low, high = jeffreys_bounds(np.ravel(k_eff), np.ravel(n_eff), level)
            out[f"jeffreys{tag}_low"], out[f"jeffreys{tag}_high"] = low, high
        with np.errstate(invalid="ignore", divide="ignore"):
            covered = np.where(total_w > 0, covered_w / np.where(total_w > 0, total_w, 1), np.nan)
        out["weight_covered"] = np.ravel(covered)
        out["no_data"] = np.ravel(empty)
        out["weighting"] = "injections (pooled k/n)" if weights is None else (weights.source or "population")
        return out


# --- helpers -------------------------------------------------------------------------------


def _index(axis: FunctionAxis, values: np.ndarray, what: str) -> np.ndarray:
    """Indices of stored bin centres (they must be the axis's own centres)."""
    index = np.searchsorted(axis.centres, np.round(values.astype(np.float64), 10))
    index = np.minimum(index, axis.centres.size - 1)
    if not np.allclose(axis.centres[index], values, atol=1e-8):
        raise GridError(f"{what}: {axis.name} values that are not the grid's bin centres")
    return index


def _cell_counts(
    path: Path, axes: list[FunctionAxis], thresholds: Mapping[str, float]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    cells = pd.read_csv(path)
    shape = tuple(a.centres.size for a in axes)
    n = np.zeros(shape, dtype=np.int64)
    k: dict[str, np.ndarray] = {}
    for label in thresholds:
        rows = cells[cells["threshold"] == label]
        if len(rows) != int(np.prod(shape)):
            raise GridError(f"{path}: {len(rows)} cells at {label}, the grid has {int(np.prod(shape))}")
        where = tuple(_index(a, rows[CELL_COLUMNS[a.name]].to_numpy(), str(path)) for a in axes)
        counts = np.zeros(shape, dtype=np.int64)
        counts[where] = rows["k"].to_numpy()
        n[where] = rows["n"].to_numpy()
        k[label] = counts
    return k, n


def _injection_counts(
    path: Path, axes: list[FunctionAxis], column: str, thresholds: Mapping[str, float]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if not path.is_file():
        raise GridError(f"{path.parent}: no injections.parquet, so no magnitude axis")
    table = pd.read_parquet(path, columns=["theta_e_bin", "psf_bin", "depth_bin", column, "probability"])
    magnitude = axes[3]
    edges = np.append(magnitude.low, magnitude.high[-1])
    labels = bin_labels(table[column].to_numpy(np.float64), edges.tolist())
    inside = labels != ""
    table = table[inside]
    where = [_index(a, table[CELL_COLUMNS[a.name]].to_numpy(), str(path)) for a in axes[:3]]
    where.append(np.clip(np.searchsorted(edges, table[column].to_numpy(np.float64), side="right") - 1, 0,
                         magnitude.centres.size - 1))  # fmt: skip
    shape = tuple(a.centres.size for a in axes)
    n = np.zeros(shape, dtype=np.int64)
    np.add.at(n, tuple(where), 1)
    k: dict[str, np.ndarray] = {}
    p = table["probability"].to_numpy()
    for label, value in thresholds.items():
        counts = np.zeros(shape, dtype=np.int64)
        np.add.at(counts, tuple(w[p >= value] for w in where), 1)
        k[label] = counts
    return k, n


def provenance(directory: Path, meta: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What went into the numbers, for a paper's methods section and an export's header."""
    definition = meta["definition"]
    fpr = meta.get("thresholds") or {}
    rules = {}
    for label, value in metrics["thresholds"].items():
        if label in fpr:
            entry = fpr[label]
            rule = (
                f"score at false-positive rate {entry['target_fpr']:g} on {entry['n_negatives']:,} "
                f"validation negatives ({entry['needed_negatives']:,} needed)"
            )
        else:
            rule = "fixed probability threshold"
        rules[label] = {"value": float(value), "rule": rule, "forced": is_forced(label, fpr)}
    checkpoint = meta.get("checkpoint", {})
    return {
        "format": "lenscal-selection-function/1",
        "grid": meta.get("name"),
        "preset": meta.get("preset", "full"),
        "results_directory": directory.resolve().name,
        "definition_sha256": meta.get("definition_sha256"),
        "geometry_sha256": meta.get("geometry_sha256"),
        "checkpoint": {
            k: checkpoint.get(k)
            for k in ("model", "model_id", "architecture", "bundle_sha256", "weights_sha256")
        },
        "injection_model": definition.get("injection_model"),
        "prior": definition.get("prior"),
        "per_cell": definition.get("per_cell"),
        "seed": definition.get("seed"),
        "host_binning": definition.get("host_binning"),
        "hosts": definition.get("hosts"),
        "poisson_gain": definition.get("poisson_gain"),
        "psf_scale": definition.get("psf_scale"),
        "injections": meta.get("injections"),
        "mock_hosts": bool(meta.get("mock_hosts", False)),
        "thresholds": rules,
        "interval": INTERVAL_METHOD,
        "depth_convention": "m5 = 22.5 - 2.5 log10(5 / sqrt(psfdepth_r)), AB (psfdepth_r in nmgy^-2)",
        "zero_point_ab": NANOMAGGY_ZEROPOINT_AB,
        "lenscal_version": meta.get("lenscal_version"),
    }


def citation(prov: Mapping[str, Any]) -> str:
    """One sentence naming everything a reader needs to reproduce the numbers."""
    checkpoint = prov.get("checkpoint") or {}
    prior = prov.get("prior") or {}
    return (
        f"Selection function from lenscal {prov.get('lenscal_version')} grid {prov.get('grid')} "
        f"(definition sha256 {str(prov.get('definition_sha256'))[:16]}, "
        f"{prov.get('injections')} injections, {prov.get('per_cell')} per cell, seed {prov.get('seed')}, "
        f"injection model {prov.get('injection_model')}, prior {prior.get('name')} "
        f"sha256 {str(prior.get('sha256'))[:16]}) for finder {checkpoint.get('model')} "
        f"(bundle sha256 {str(checkpoint.get('bundle_sha256'))[:16]}); intervals {INTERVAL_METHOD}."
    )
