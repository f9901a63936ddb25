"""Pictures of a grid run, as a referee would want them: completeness heatmaps (theta_E x PSF
FWHM, one panel per depth) with k/n in each cell and "no data" cells hatched; marginal
completeness against theta_E and source magnitude with Jeffreys 68% bars and n per point; a
comparison's difference map on a symmetric range fitted to the data, cells whose paired
95% interval excludes 0 outlined. Titles say what ran (grid, treatment, threshold, preset);
a demo preset, mock hosts and forced FPR thresholds carry badges (lenscal.plotting)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.plotting import pyplot, save_figure, threshold_colour
from lenscal.selection.config import GridError

HEATMAP_THRESHOLD = "p>=0.5"
THETA_LABEL = "Einstein radius θ_E (arcsec)"
PSF_LABEL = "PSF FWHM, r band (arcsec)"
PANELS_PER_ROW = 3


@dataclass
class RunLabel:
    """What a figure's title and badges say about the run it shows (from meta.json)."""

    name: str = "grid"
    treatment: str = "baseline"
    preset: str = "full"
    mock: bool = False
    forced: list[str] = field(default_factory=list)

    @property
    def demo(self) -> bool:
        return self.preset == "demo"

    def title(self) -> str:
        return f"grid {self.name} · {self.treatment} · preset {self.preset}"


def run_label(meta: dict[str, Any]) -> RunLabel:
    definition = meta.get("definition", {})
    thresholds = meta.get("thresholds", {}) or {}
    return RunLabel(
        name=str(meta.get("name", "grid")),
        treatment=treatment(definition),
        preset=str(meta.get("preset") or "full"),
        mock=bool(meta.get("mock_hosts", False)),
        forced=sorted(k for k, v in thresholds.items() if isinstance(v, dict) and v.get("forced")),
    )


def treatment(definition: dict[str, Any]) -> str:
    """The grid's treatment in words: Poisson noise, preprocessing override, PSF scale, prior."""
    parts = []
    gain = definition.get("poisson_gain")
    parts.append(f"Poisson gain {gain:g} e-/nmgy" if gain else "no Poisson noise")
    override = definition.get("preprocess_override")
    if override:
        parts.append("preprocessing " + ", ".join(f"{k}={v}" for k, v in override.items() if v is not None))
    if definition.get("psf_scale", 1.0) not in (1, 1.0, None):
        parts.append(f"PSF x{definition['psf_scale']:g}")
    prior = definition.get("prior", {})
    if isinstance(prior, dict) and prior.get("name"):
        parts.append(f"prior {prior['name']}")
    return ", ".join(parts)


def grid_plots(out: Path, threshold: str = HEATMAP_THRESHOLD) -> list[Path]:
    cells = pd.read_csv(out / "cells.csv")
    meta_path = out / "meta.json"
    label = run_label(json.loads(meta_path.read_text())) if meta_path.is_file() else RunLabel()
    written = [heatmaps(cells, out / "completeness_heatmaps.png", "completeness", threshold, label=label)]
    for name, column, axis in (
        ("theta_e", "theta_e_bin", THETA_LABEL),
        ("source_mag", "source_mag_bin", "unlensed source magnitude, r band (AB mag)"),
    ):
        table = pd.read_csv(out / f"marginal_{name}.csv")
        written.append(marginal(table, column, axis, out / f"completeness_vs_{name}.png", label=label))
    return written


def heatmaps(
    cells: pd.DataFrame,
    path: Path,
    value: str,
    threshold: str,
    diverging: bool = False,
    *,
    label: RunLabel | None = None,
    title: str | None = None,
) -> Path:
    """One panel per depth. ``diverging``: a difference (B - A) on a symmetric range fitted
    to the data; cells with ``newcombe95_low``/``_high`` both on one side of 0 outlined."""
    plt = pyplot()
    label = label or RunLabel()
    known = set(cells["threshold"])
    if threshold not in known:
        raise GridError(f"threshold {threshold!r} is not in this run; it has {', '.join(sorted(known))}")
    chosen = cells[cells["threshold"] == threshold]
    depths = sorted(chosen["depth_bin"].unique())
    thetas = sorted(chosen["theta_e_bin"].unique())
    psfs = sorted(chosen["psf_bin"].unique())
    shown = chosen[~chosen["no_data"].astype(bool)][value].abs()
    if diverging:
        top = max(0.05, math.ceil((float(shown.max()) if len(shown) else 0.05) * 20) / 20)
        limits, cmap = (-top, top), plt.get_cmap("RdBu_r")
    else:
        limits, cmap = (0.0, 1.0), plt.get_cmap("viridis")
    cmap = cmap.with_extremes(bad="#e6e6e6")
    cols = min(PANELS_PER_ROW, len(depths))
    rows = math.ceil(len(depths) / cols)
    width = max(3.4, 0.5 * len(thetas) + 1.0)
    height = max(2.6, 0.38 * len(psfs) + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.2, height * rows + 0.9), squeeze=False)
    image = None
    for ax, depth in zip(axes.flat, depths, strict=False):
        panel = chosen[chosen["depth_bin"] == depth].set_index(["psf_bin", "theta_e_bin"])
        grid = np.full((len(psfs), len(thetas)), np.nan)
        for i, p in enumerate(psfs):
            for j, t in enumerate(thetas):
                if (p, t) in panel.index and not bool(panel.loc[(p, t), "no_data"]):
                    grid[i, j] = panel.loc[(p, t), value]
        image = ax.imshow(
            np.ma.masked_invalid(grid),
            origin="lower",
            cmap=cmap,
            vmin=limits[0],
            vmax=limits[1],
            aspect="auto",
        )
        for i, p in enumerate(psfs):
            for j, t in enumerate(thetas):
                if (p, t) not in panel.index or bool(panel.loc[(p, t), "no_data"]):
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0))
                    continue
                row = panel.loc[(p, t)]
                _cell_text(ax, plt, row, value, grid[i, j], j, i, diverging, limits[1])
        ax.set_xticks(range(len(thetas)), [f"{t:g}" for t in thetas], rotation=90)
        ax.set_yticks(range(len(psfs)), [f"{p:g}" for p in psfs])
        ax.set_title(f"r-band 5σ depth {depth:g} AB mag")
        ax.set_xlabel(THETA_LABEL)
        ax.set_ylabel(PSF_LABEL)
    for ax in list(axes.flat)[len(depths) :]:
        ax.set_visible(False)
    what = "completeness (k/n)" if not diverging else f"difference in completeness, {value}"
    notes = "hatched: no hosts in the cell (no data)"
    if diverging:
        notes += "; outlined *: paired 95% interval excludes 0"
    fig.suptitle(f"{title or f'{what} at {threshold} · {label.title()}'}\n{notes}")
    fig.tight_layout(rect=(0, 0, 0.9, 0.93))
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.85, pad=0.02)
        bar.set_label("B − A completeness" if diverging else "completeness k/n")
    forced = [threshold] if threshold in label.forced else []
    return save_figure(fig, path, demo=label.demo, mock=label.mock, forced=forced)


def _cell_text(
    ax: Any, plt: Any, row: pd.Series, value: str, shade: float, x: int, y: int, diverging: bool, top: float
) -> None:
    """k/n (or the signed difference) in the cell, in a colour legible on the cell's shade;
    a difference whose paired interval excludes 0 is outlined and starred."""
    if diverging:
        dark = abs(shade) > 0.6 * top
        significant = "newcombe95_low" in row and (row["newcombe95_low"] > 0 or row["newcombe95_high"] < 0)
        text = f"{row[value]:+.2f}" + ("*" if significant else "")
        if significant:
            ax.add_patch(plt.Rectangle((x - 0.46, y - 0.46), 0.92, 0.92, fill=False, lw=1.6, ec="black"))
    else:
        dark = shade < 0.5
        text = f"{int(row.k)}/{int(row.n)}"
    ax.text(x, y, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")


def marginal(
    table: pd.DataFrame, column: str, axis_label: str, path: Path, *, label: RunLabel | None = None
) -> Path:
    """Pooled completeness against ``column`` at every threshold (fixed colours; forced FPR
    thresholds dashed and named), Jeffreys 68% bars, n under each point."""
    plt = pyplot()
    label = label or RunLabel()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    categorical = not pd.api.types.is_numeric_dtype(table[column])
    counted: pd.Series | None = None
    for threshold, rows in table.groupby("threshold", sort=False):
        rows = rows[~rows["no_data"].astype(bool)]
        x = np.arange(len(rows)) if categorical else rows[column].to_numpy(float)
        y = rows["completeness"].to_numpy(float)
        err = np.vstack([y - rows["jeffreys68_low"], rows["jeffreys68_high"] - y])
        forced = threshold in label.forced
        ax.errorbar(
            x,
            y,
            yerr=err,
            marker="o",
            capsize=2,
            color=threshold_colour(str(threshold)),
            ls="--" if forced else "-",
            label=f"{threshold}{' (forced)' if forced else ''}",
        )
        if counted is None:
            counted = pd.Series(rows["n"].to_numpy(int), index=x)
            if categorical:
                ax.set_xticks(x, [str(v) for v in rows[column]])
    if counted is not None:
        for where, n in counted.items():
            ax.annotate(
                f"n={n}",
                (where, 0.0),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color="#444444",
            )
    ax.set_xlabel(axis_label)
    ax.set_ylabel("completeness (pooled k/n, Jeffreys 68%)")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(label.title())
    ax.legend(title="threshold", loc="upper left")
    fig.tight_layout()
    forced_here = [t for t in label.forced if t in set(table["threshold"])]
    return save_figure(fig, path, demo=label.demo, mock=label.mock, forced=forced_here)
