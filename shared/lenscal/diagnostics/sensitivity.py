"""Sensitivity analysis (the team's eight perturbations): the grid run again with one
assumption moved at a time (PSF FWHM +-10%, source R_e +-30%, source g - r +-0.2 mag, the
lens axis-ratio range broader / narrower), each compared with the unperturbed baseline on
the same injections (same seeds and hosts): per-cell completeness shifts (mean, largest,
spread over cells with data) and the pooled shift with Newcombe's 95% interval. The spread
is the systematic band a completeness number carries from its injection assumptions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.plotting import pyplot, save_figure
from lenscal.progress import progress_bar
from lenscal.selection.compare import compare
from lenscal.selection.config import GridConfig, load_grid
from lenscal.selection.runner import run_grid
from lenscal.stats.intervals import PAIRED_METHOD
from lenscal.validation import validated


class Perturbation(CheckParams):
    name: str
    psf_scale: float = 1.0  # factor on each host's PSF FWHM when rendering
    re_scale: float = 1.0  # factor on the source R_e range
    g_minus_r_shift: float = 0.0  # mag, added to the mean source g - r
    q_lens_range: tuple[float, float] | None = None  # replaces the lens axis-ratio range


EIGHT = (
    Perturbation(name="psf_plus10pct", psf_scale=1.10),
    Perturbation(name="psf_minus10pct", psf_scale=0.90),
    Perturbation(name="source_size_plus30pct", re_scale=1.30),
    Perturbation(name="source_size_minus30pct", re_scale=0.70),
    Perturbation(name="color_shift_red", g_minus_r_shift=0.2),
    Perturbation(name="color_shift_blue", g_minus_r_shift=-0.2),
    Perturbation(name="q_lens_broader", q_lens_range=(0.3, 1.0)),
    Perturbation(name="q_lens_narrower", q_lens_range=(0.7, 1.0)),
)


class SensitivityParams(CheckParams):
    grid: str = "d05"
    per_cell: int = 100
    #: The team's sensitivity_analysis.py drew 10,000 hosts (its --host-max default).
    host_max: int = 10_000
    overrides: dict[str, Any] = Field(default_factory=dict)  # other grid keys
    threshold: str = "p>=0.5"
    perturbations: tuple[Perturbation, ...] = EIGHT
    chunk_size: int = 256


@register_check("sensitivity", SensitivityParams)
def sensitivity(ctx: Context, params: SensitivityParams, out: Path) -> Outcome:
    """Sensitivity analysis: completeness shifts under the eight injection perturbations."""
    base = load_grid(
        params.grid, per_cell=params.per_cell, **{"host_max": params.host_max, **params.overrides}
    )
    runs = {"baseline": base} | {p.name: perturbed(base, p) for p in params.perturbations}
    dirs = {}
    with progress_bar(len(runs), "sensitivity grids", enabled=ctx.progress) as advance:
        for name, config in runs.items():
            dirs[name] = out / name
            if name != "baseline" and (out / "baseline" / "negatives.parquet").is_file():
                # The same model scores the same negatives: reuse the baseline's scores.
                dirs[name].mkdir(parents=True, exist_ok=True)
                if not (dirs[name] / "negatives.parquet").is_file():
                    shutil.copy2(out / "baseline" / "negatives.parquet", dirs[name] / "negatives.parquet")
            run_grid(
                config,
                hosts=ctx.hosts,
                scorer=ctx.scorer,
                injector=ctx.injector,
                out=dirs[name],
                model=ctx.model,
                chunk_size=params.chunk_size,
                progress=False,
            )
            advance(1)
    rows = []
    for p in params.perturbations:
        comparison = compare(dirs["baseline"], dirs[p.name], out=out / p.name / "vs_baseline")
        cells = comparison.cells[
            (comparison.cells["threshold"] == params.threshold) & ~comparison.cells["no_data"]
        ]
        overall: Any = comparison.marginals["overall"].set_index("threshold").loc[params.threshold]
        delta = cells["difference"].to_numpy(float)
        rows.append(
            {
                "perturbation": p.name,
                "cells": int(delta.size),
                "mean_delta_c": float(np.mean(delta)) if delta.size else np.nan,
                "max_abs_delta_c": float(np.max(np.abs(delta))) if delta.size else np.nan,
                "std_delta_c": float(np.std(delta, ddof=1)) if delta.size > 1 else np.nan,
                "pooled_delta_c": float(overall.difference),
                "newcombe95_low": float(overall.newcombe95_low),
                "newcombe95_high": float(overall.newcombe95_high),
                "paired": comparison.method == PAIRED_METHOD,
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(out / "sensitivity.csv", index=False)
    metrics: dict[str, Any] = {"threshold": params.threshold, "grid": base.name, "per_cell": params.per_cell}
    for _, r in table.iterrows():
        metrics[r.perturbation] = {
            "pooled_delta_c": r.pooled_delta_c,
            "newcombe95": [r.newcombe95_low, r.newcombe95_high],
            "mean_delta_c": r.mean_delta_c,
            "max_abs_delta_c": r.max_abs_delta_c,
            "std_delta_c": r.std_delta_c,
        }
    widest: Any = table.iloc[int(np.argmax(table["pooled_delta_c"].abs().to_numpy()))]
    headline = [
        f"largest pooled shift at {params.threshold}: {widest.perturbation} {widest.pooled_delta_c:+.4f} "
        f"({'paired Newcombe 95%, the same injections' if widest.paired else 'Newcombe 95%'} "
        f"[{widest.newcombe95_low:+.4f}, {widest.newcombe95_high:+.4f}])",
        f"systematic band (max |pooled shift| over the {len(table)} perturbations): "
        f"{table['pooled_delta_c'].abs().max():.4f}",
    ]
    return Outcome(metrics, headline, table, [_plot(table, params.threshold, out / "sensitivity.png")])


def perturbed(base: GridConfig, p: Perturbation) -> GridConfig:
    """The grid with one perturbation applied to its prior and rendering."""
    prior = base.prior_model()
    source = prior.source_params
    overrides: dict[str, dict[str, Any]] = {k: dict(v) for k, v in base.prior_overrides.items()}
    if p.re_scale != 1.0:
        lo, hi = source.re_arcsec_range
        overrides.setdefault("source_params", {})["re_arcsec_range"] = [lo * p.re_scale, hi * p.re_scale]
    if p.g_minus_r_shift:
        mu, sigma = source.g_minus_r_mu_sigma
        overrides.setdefault("source_params", {})["g_minus_r_mu_sigma"] = [mu + p.g_minus_r_shift, sigma]
    if p.q_lens_range is not None:
        overrides.setdefault("lens_params", {})["q_lens_range"] = list(p.q_lens_range)
    data = base.model_dump(mode="json") | {
        "name": f"{base.name}+{p.name}",
        "prior_overrides": overrides,
        "psf_scale": base.psf_scale * p.psf_scale,
    }
    return validated(GridConfig, data, source=f"sensitivity {p.name}")


def _plot(table: pd.DataFrame, threshold: str, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.4 * len(table)))
    y = np.arange(len(table))
    d = table["pooled_delta_c"].to_numpy(float)
    err = np.vstack([d - table["newcombe95_low"], table["newcombe95_high"] - d])
    ax.barh(y, d, xerr=err, capsize=2, color="tab:blue", alpha=0.7, label="pooled (paired Newcombe 95%)")
    ax.scatter(table["max_abs_delta_c"], y, marker="|", color="k", s=80, label="max |per-cell shift|")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, table["perturbation"])
    ax.invert_yaxis()
    ax.set_xlabel(f"completeness shift vs baseline at {threshold}")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
