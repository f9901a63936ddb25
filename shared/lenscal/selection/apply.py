"""A selection function applied to a catalogue: each object's detection probability with its
interval, and the closure test against the finder's scores on the same objects.

Columns: theta_E in arcsec; PSF FWHM in arcsec (default the Tractor ``psfsize_r``); depth as
an r-band 5-sigma AB magnitude, either given (``depth_column``) or converted from Tractor's
``psfdepth_r`` (nmgy^-2) exactly as the grid bins its hosts (``m5_from_psfdepths``; a
non-positive psfdepth is missing). An object outside the grid, or with a missing value, gets
NaN and a flag naming the axis, never an extrapolated number.

The closure test asks whether the grid, made of injections, predicts how often the finder
finds these real (or mock) lenses. Over the objects inside the grid with data, per
theta_E bin and overall: the predicted detection fraction is the selection function weighted
by the objects' own cells (SelectionFunction.marginal with their population; its interval
from the cells' counts), the measured recall is k/n of those objects scoring at or above the
grid's threshold value (Jeffreys). A measured recall below the prediction is the realism gap:
injections easier than the lenses they stand for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.errors import LenscalError
from lenscal.selection.config import GridError
from lenscal.selection.function import SelectionFunction
from lenscal.stats.intervals import jeffreys_bounds
from lenscal.survey import m5_from_psfdepths

PREFIX = "sf_"


@dataclass(frozen=True)
class CatalogColumns:
    """Which catalogue columns hold the selection function's coordinates."""

    theta_e: str = "theta_e"  # arcsec
    psf_fwhm: str = "psfsize_r"  # arcsec
    depth: str | None = None  # r 5-sigma depth, AB mag; None: convert psfdepth
    psfdepth: str = "psfdepth_r"  # nmgy^-2 (Tractor)
    magnitude: str | None = None  # for a selection function with a magnitude axis (AB)


def read_catalog(path: str | Path) -> pd.DataFrame:
    """A catalogue from CSV, Parquet or FITS (any table astropy reads)."""
    path = Path(path)
    if not path.exists():
        raise LenscalError(f"{path}: no such catalogue")
    suffix = path.suffix.lower()
    if path.is_dir():  # a survey catalogue's parts
        return pd.read_parquet(path)
    if suffix in (".csv", ".parquet", ".pq"):
        from lenscal.data.manifest import read_manifest

        return read_manifest(path, validate=False)  # the one CSV/Parquet reader (clear errors)
    if suffix in (".fits", ".fit", ".fits.gz", ".ecsv"):
        from astropy.table import Table

        table = Table.read(path)
        names = [n for n in table.colnames if len(table[n].shape) <= 1]  # vector columns do not fit a frame
        return table[names].to_pandas()
    raise LenscalError(f"{path}: unknown catalogue format {suffix!r}; use .csv, .parquet or .fits")


def write_catalog(frame: pd.DataFrame, path: str | Path) -> Path:
    """``frame`` to CSV, Parquet or FITS by the suffix, atomically."""
    from astropy.table import Table

    from lenscal.data.manifest import write_manifest
    from lenscal.fsutil import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return write_manifest(frame, path)
    if suffix != ".fits":
        raise LenscalError(f"{path}: unknown output format {suffix!r}; use .csv, .parquet or .fits")
    with atomic_path(path) as tmp:
        Table.from_pandas(frame).write(tmp, format="fits")
    return path


def _column(catalog: pd.DataFrame, name: str, what: str) -> np.ndarray:
    if name not in catalog.columns:
        shown = ", ".join(map(str, catalog.columns[:30]))
        raise LenscalError(f"the catalogue has no column {name!r} ({what}); its columns: {shown}")
    values = pd.to_numeric(catalog[name], errors="coerce")
    return np.asarray(values, dtype=np.float64)


def observing_conditions(catalog: pd.DataFrame, columns: CatalogColumns) -> dict[str, np.ndarray]:
    """psf_fwhm (arcsec) and depth (AB mag) of each object: what a survey's population is
    weighted by."""
    out = {"psf_fwhm": _column(catalog, columns.psf_fwhm, "PSF FWHM, arcsec")}
    if columns.depth is not None:
        out["depth"] = _column(catalog, columns.depth, "5-sigma depth, AB mag")
    else:
        psfdepth = _column(catalog, columns.psfdepth, "point-source depth, nmgy^-2 (Tractor psfdepth_r)")
        out["depth"] = m5_from_psfdepths(psfdepth)
    return out


def coordinates(catalog: pd.DataFrame, columns: CatalogColumns) -> dict[str, np.ndarray]:
    """theta_e, psf_fwhm, depth (and magnitude) of each object, in the function's units."""
    out = {"theta_e": _column(catalog, columns.theta_e, "Einstein radius, arcsec")}
    out.update(observing_conditions(catalog, columns))
    if columns.magnitude is not None:
        out["magnitude"] = _column(catalog, columns.magnitude, "magnitude, AB")
    return out


def apply(
    sf: SelectionFunction,
    catalog: pd.DataFrame,
    *,
    threshold: str,
    columns: CatalogColumns | None = None,
    method: str = "nearest",
) -> pd.DataFrame:
    """The catalogue with the selection function's coordinates and answer added:
    ``sf_theta_e``, ``sf_psf_fwhm``, ``sf_depth``, ``p_detect`` and its Jeffreys 68/95%
    limits, the cell's ``sf_k`` / ``sf_n``, ``sf_outside``, ``sf_no_data`` and ``sf_flag``."""
    columns = columns or CatalogColumns()
    if len(sf.axes) == 4 and columns.magnitude is None:
        raise GridError(f"this selection function has a {sf.axes[3].name} axis: name the magnitude column")
    coords = coordinates(catalog, columns)
    answer = sf.completeness(
        coords["theta_e"], coords["psf_fwhm"], coords["depth"],
        magnitude=coords.get("magnitude"), threshold=threshold, method=method,
    )  # fmt: skip
    out = catalog.reset_index(drop=True).copy()
    out[f"{PREFIX}theta_e"], out[f"{PREFIX}psf_fwhm"] = coords["theta_e"], coords["psf_fwhm"]
    out[f"{PREFIX}depth"] = coords["depth"]
    out["p_detect"] = answer.estimate
    out["p_detect_68_low"], out["p_detect_68_high"] = answer.low68, answer.high68
    out["p_detect_95_low"], out["p_detect_95_high"] = answer.low95, answer.high95
    out[f"{PREFIX}k"], out[f"{PREFIX}n"] = answer.k, answer.n
    out[f"{PREFIX}outside"], out[f"{PREFIX}no_data"] = answer.outside, answer.no_data
    out[f"{PREFIX}flag"] = answer.flag
    out[f"{PREFIX}threshold"] = threshold
    return out


def read_scores(path: str | Path, id_column: str, score_column: str) -> pd.Series:
    """Scores by object ID from a scored table (``lenscal score`` Parquet, a survey
    catalogue's parts directory, CSV or FITS)."""
    path = Path(path)
    scores = read_catalog(path / "parts" if (path / "parts").is_dir() else path)
    for name, what in ((id_column, "object ID"), (score_column, "finder probability")):
        if name not in scores.columns:
            shown = ", ".join(map(str, scores.columns[:30]))
            raise LenscalError(f"{path}: no column {name!r} ({what}); its columns: {shown}")
    if scores[id_column].duplicated().any():
        raise LenscalError(f"{path}: object IDs in {id_column!r} repeat; one score per object")
    return pd.Series(
        scores[score_column].to_numpy(np.float64),
        index=scores[id_column].astype(str).to_numpy(),
        name="score",
    )


def closure(
    sf: SelectionFunction, applied: pd.DataFrame, scores: pd.Series, *, id_column: str, threshold: str
) -> pd.DataFrame:
    """Predicted detection fraction beside measured recall, per theta_E bin and overall, over
    the objects of ``applied`` inside the grid with data and with a score."""
    ids = applied[id_column].astype(str)
    missing = ~ids.isin(scores.index)
    usable = applied[~applied[f"{PREFIX}outside"] & ~applied[f"{PREFIX}no_data"] & ~missing.to_numpy()]
    if usable.empty:
        raise LenscalError(
            f"no object is inside the grid with data and scored ({int(missing.sum())} of {len(applied)} "
            f"have no score; {int(applied[f'{PREFIX}outside'].sum())} lie outside the grid)"
        )
    detected = scores.reindex(usable[id_column].astype(str)).to_numpy() >= sf.thresholds[threshold]
    theta_axis = sf.axis("theta_e")
    bins = theta_axis.locate(usable[f"{PREFIX}theta_e"].to_numpy())
    sample = {name: usable[f"{PREFIX}{name}"].to_numpy() for name in ("theta_e", "psf_fwhm", "depth")}
    if len(sf.axes) == 4:
        raise GridError(
            "the closure test runs on theta_E x PSF x depth (load the function without magnitude)"
        )
    weights = sf.weights_from(sample, source="the catalogue's objects")
    predicted = sf.marginal("theta_e", threshold=threshold, weights=weights).set_index("theta_e")
    overall = sf.marginal([], threshold=threshold, weights=weights).iloc[0]
    rows = []
    for index, centre in enumerate(theta_axis.centres):
        chosen = bins == index
        if chosen.any():
            rows.append(_closure_row(f"{theta_axis.low[index]:g}-{theta_axis.high[index]:g}", centre,
                                     predicted.loc[centre], detected[chosen]))  # fmt: skip
    rows.append(_closure_row("all", np.nan, overall, detected))
    table = pd.DataFrame(rows)
    table.insert(1, "threshold", threshold)
    table.attrs["excluded"] = {
        "outside_grid": int(applied[f"{PREFIX}outside"].sum()),
        "no_data": int(applied[f"{PREFIX}no_data"].sum()),
        "no_score": int(missing.sum()),
    }
    return table


def _closure_row(label: str, centre: float, predicted: Any, detected: np.ndarray) -> dict[str, Any]:
    k, n = int(detected.sum()), int(detected.size)
    low, high = jeffreys_bounds(np.array([k]), np.array([n]), 0.95)
    return {
        "theta_e_bin": label,
        "theta_e": centre,
        "objects": n,
        "predicted": float(predicted["completeness"]),
        "predicted95_low": float(predicted["jeffreys95_low"]),
        "predicted95_high": float(predicted["jeffreys95_high"]),
        "predicted_n_effective": float(predicted["n_effective"]),
        "measured_k": k,
        "measured": k / n,
        "measured95_low": float(low[0]),
        "measured95_high": float(high[0]),
        "measured_minus_predicted": k / n - float(predicted["completeness"]),
    }


def closure_figure(table: pd.DataFrame, out: Path, title: str, mock: bool = False) -> Path:
    """Predicted (injections) and measured (the catalogue's lenses) detection fraction per
    theta_E bin, 95% intervals, objects per bin under each bin's label."""
    from lenscal.plotting import pyplot, save_figure

    plt = pyplot()
    rows = table[table["theta_e_bin"] != "all"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    x = np.arange(len(rows))
    for shift, (name, label, colour) in zip(
        (-0.12, 0.12),
        (("predicted", "predicted by the grid (injections), 95%", "#1f77b4"),
         ("measured", "measured recall on the catalogue, Jeffreys 95%", "#d62728")),
        strict=True,
    ):  # fmt: skip
        low = rows[name] - rows[f"{name}95_low"]
        high = rows[f"{name}95_high"] - rows[name]
        ax.errorbar(x + shift, rows[name], yerr=[low, high], fmt="o", capsize=3, color=colour, label=label)
    ax.set_xticks(x, [f"{b}\n{n} objects" for b, n in zip(rows["theta_e_bin"], rows["objects"], strict=True)])
    ax.set_xlabel("Einstein radius θ_E bin (arcsec)")
    ax.set_ylabel(f"detection fraction at {table['threshold'].iloc[0]}")
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title)
    return save_figure(fig, out, mock=mock)
