"""Pictures of a grid run: completeness heatmaps (theta_E x PSF, one panel per depth) with
k/n in each cell and "no data" cells hatched; marginal completeness against theta_E and
against source magnitude with Jeffreys 68% error bars; a comparison's difference map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.plotting import pyplot, save_figure

HEATMAP_THRESHOLD = "p>=0.5"


def grid_plots(out: Path) -> list[Path]:
    cells = pd.read_csv(out / "cells.csv")
    written = [heatmaps(cells, out / "completeness_heatmaps.png", "completeness", HEATMAP_THRESHOLD)]
    for name, column, label in (
        ("theta_e", "theta_e_bin", "Einstein radius θ_E (arcsec)"),
        ("source_mag", "source_mag_bin", "unlensed source r (AB mag)"),
    ):
        table = pd.read_csv(out / f"marginal_{name}.csv")
        written.append(marginal(table, column, label, out / f"completeness_vs_{name}.png"))
    return written


def heatmaps(cells: pd.DataFrame, path: Path, value: str, threshold: str, diverging: bool = False) -> Path:
    plt = pyplot()
    chosen = cells[cells["threshold"] == threshold] if threshold in set(cells["threshold"]) else cells
    depths = sorted(chosen["depth_bin"].unique())
    thetas = sorted(chosen["theta_e_bin"].unique())
    psfs = sorted(chosen["psf_bin"].unique())
    fig, axes = plt.subplots(1, len(depths), figsize=(3.2 * len(depths) + 1, 3.6), squeeze=False)
    cmap = plt.get_cmap("RdBu_r" if diverging else "viridis").with_extremes(bad="lightgrey")
    limits = (-1.0, 1.0) if diverging else (0.0, 1.0)
    image = None
    for ax, depth in zip(axes[0], depths, strict=True):
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
                text = f"{int(row.k)}/{int(row.n)}" if "k" in row else f"{row[value]:+.2f}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=5,
                    color="white" if grid[i, j] < 0.5 else "k",
                )
        ax.set_xticks(range(len(thetas)), [f"{t:g}" for t in thetas], fontsize=6, rotation=90)
        ax.set_yticks(range(len(psfs)), [f"{p:g}" for p in psfs], fontsize=6)
        ax.set_title(f"depth m5 = {depth:g}", fontsize=8)
        ax.set_xlabel("θ_E (arcsec)", fontsize=7)
    axes[0][0].set_ylabel("PSF FWHM r (arcsec)", fontsize=7)
    fig.suptitle(f"{value} at {threshold} (hatched: no hosts = no data)", fontsize=9)
    fig.subplots_adjust(bottom=0.22, top=0.86, left=0.07)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return save_figure(fig, path)


def marginal(table: pd.DataFrame, column: str, label: str, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for threshold, rows in table.groupby("threshold", sort=False):
        rows = rows[~rows["no_data"]]
        categorical = not pd.api.types.is_numeric_dtype(rows[column])
        x = np.arange(len(rows)) if categorical else rows[column].to_numpy(float)
        y = rows["completeness"].to_numpy(float)
        err = np.vstack([y - rows["jeffreys68_low"], rows["jeffreys68_high"] - y])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=2, label=str(threshold))
        if categorical:
            ax.set_xticks(x, [str(v) for v in rows[column]])
    ax.set_xlabel(label)
    ax.set_ylabel("completeness (pooled k/n, Jeffreys 68%)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
