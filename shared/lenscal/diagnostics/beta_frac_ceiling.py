"""The beta_frac ceiling as the team calculated it for D01 (scripts/beta_frac_ceiling_diagnostic.py):
no CNN. Two parts:

1. The CDF of beta_frac under area-weighted sampling beta_frac = sqrt(U(lo^2, hi^2)):
   P(beta_frac < t) = (t^2 - lo^2) / (hi^2 - lo^2) on [lo, hi]; with lo, hi = 0.1, 1.0,
   P(beta_frac < 0.55) = 29.5%, the "~30% ceiling" hypothesis.
2. An S/N proxy on blank hosts: arcs from the prior (theta_E 1.5", r-band PSF FWHM 1.3", g and
   z scaled x1.05 / x0.94 as their engine) with beta_frac drawn from 0.1 to each upper limit;
   "detected" when the r-band arc flux in the annulus 4 <= r <= 16 px (r >= 3 px) about the
   stamp centre, over sqrt(n_pixels) sigma_pix, exceeds 5, where sigma_pix is their
   independent-pixel estimate from psfdepth 100 nmgy^-2, lenscal.survey.pixel_noise_sigma:
   1 / sqrt(psfdepth 4 pi sigma_psf^2) for a Gaussian PSF of sigma_psf pixels. Then P(detected |
   beta_frac) in bins over the widest range. Blank hosts make these upper bounds (no host
   light), as the team's script says. The CNN version is the ``beta_frac`` check."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.injection.api import RenderOptions
from lenscal.injection.priors import get_prior, sample_params
from lenscal.plotting import pyplot, save_figure
from lenscal.selection.tables import with_intervals
from lenscal.survey import CUTOUT_SIZE, pixel_noise_sigma


class BetaFracCeilingParams(CheckParams):
    prior: str = "team_d01_d05"
    beta_frac_low: float = 0.1
    beta_frac_maxes: tuple[float, ...] = (0.40, 0.55, 0.65, 0.80, 1.00)
    cdf_thresholds: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0)
    bin_edges: tuple[float, ...] = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    n_trials: int = 200  # arcs per upper limit
    theta_e: float = 1.5  # arcsec
    psf_fwhm_r: float = 1.3  # arcsec
    psf_scale_g: float = 1.05
    psf_scale_z: float = 0.94
    psfdepth_r: float = 100.0  # nmgy^-2, the team's proxy
    snr_threshold: float = 5.0
    annulus_px: tuple[float, float] = (4.0, 16.0)
    core_px: float = 3.0
    seed: int = 42


def beta_frac_cdf(t: float, low: float, high: float) -> float:
    """P(beta_frac < t) for beta_frac = sqrt(U(low^2, high^2))."""
    if t <= low:
        return 0.0
    if t >= high:
        return 1.0
    return (t * t - low * low) / (high * high - low * low)


def annulus_snr(
    arcs_r: np.ndarray, sigma_pix: float, annulus: tuple[float, float], core: float
) -> np.ndarray:
    """(N,) sum of the r-band arc over the annulus about the stamp centre / (sqrt(n) sigma_pix)."""
    size = arcs_r.shape[-1]
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size]
    r = np.hypot(x - c, y - c)
    ring = (r >= annulus[0]) & (r <= annulus[1]) & (r >= core)
    return arcs_r[:, ring].sum(axis=1) / (math.sqrt(int(ring.sum())) * sigma_pix)


@register_check("beta_frac_ceiling", BetaFracCeilingParams)
def beta_frac_ceiling(ctx: Context, params: BetaFracCeilingParams, out: Path) -> Outcome:
    """beta_frac ceiling (no CNN): the area-weighted beta_frac CDF and an arc S/N proxy on blank hosts."""
    low, high = params.beta_frac_low, max(params.beta_frac_maxes)
    cdf = pd.DataFrame(
        {
            "threshold": params.cdf_thresholds,
            "p_below": [beta_frac_cdf(t, low, high) for t in params.cdf_thresholds],
        }
    )
    cdf.to_csv(out / "beta_frac_cdf.csv", index=False)
    sigma = pixel_noise_sigma(params.psfdepth_r, params.psf_fwhm_r)  # theirs: FWHM / 2.355, the same to 2e-5
    fwhm = np.tile(
        [params.psf_fwhm_r * params.psf_scale_g, params.psf_fwhm_r, params.psf_fwhm_r * params.psf_scale_z],
        (params.n_trials, 1),
    )
    base = get_prior(params.prior)
    trials = []
    for bf_max in params.beta_frac_maxes:
        prior = base.with_overrides(
            {"source_params": {"beta_frac_range": [low, bf_max]}}, source="beta_frac_ceiling"
        )
        arc_params = sample_params(
            prior, np.full(params.n_trials, params.theta_e), fwhm, seed=params.seed, cell=f"bf_max_{bf_max:g}"
        )
        arcs = ctx.injector.render(arc_params, size=CUTOUT_SIZE, options=RenderOptions())
        snr = annulus_snr(np.asarray(arcs, dtype=np.float64)[:, 1], sigma, params.annulus_px, params.core_px)
        beta = np.hypot(
            (arc_params.src_x - arc_params.lens_x).numpy(), (arc_params.src_y - arc_params.lens_y).numpy()
        )
        trials.append(
            pd.DataFrame(
                {
                    "beta_frac_max": bf_max,
                    "beta_frac": beta / params.theta_e,
                    "snr": snr,
                    "detected": snr > params.snr_threshold,
                }
            )
        )
    frame = pd.concat(trials, ignore_index=True)
    frame.to_parquet(out / "trials.parquet", index=False)
    by_max = with_intervals(
        frame.groupby("beta_frac_max", sort=True)
        .agg(
            k=("detected", "sum"),
            n=("detected", "size"),
            mean_snr=("snr", "mean"),
            median_beta_frac=("beta_frac", "median"),
        )
        .reset_index()
    )
    by_max.to_csv(out / "detection_by_beta_frac_max.csv", index=False)
    widest = frame[frame["beta_frac_max"] == high]
    beta, detected = widest["beta_frac"].to_numpy(), widest["detected"].to_numpy()
    binned = with_intervals(
        pd.DataFrame(
            [
                {
                    "beta_frac_bin": f"{a:.1f}-{b:.1f}",
                    "k": int(detected[inside].sum()),
                    "n": int(inside.sum()),
                }
                for a, b in itertools.pairwise(params.bin_edges)
                for inside in [(beta >= a) & (beta < b)]
            ]
        )
    )
    binned.to_csv(out / "detection_by_beta_frac.csv", index=False)
    metrics: dict[str, Any] = {
        "beta_frac_range": [low, high],
        "p_beta_frac_below_0.55": beta_frac_cdf(0.55, low, high),
        "cdf": {f"{t:g}": p for t, p in zip(cdf["threshold"], cdf["p_below"], strict=True)},
        "sigma_pix_r": sigma,
        "snr_threshold": params.snr_threshold,
        "n_trials": params.n_trials,
        "detection": {f"{r.beta_frac_max:g}": _detection(r) for r in by_max.itertuples()},
    }
    full: Any = by_max[by_max["beta_frac_max"] == high].iloc[0]
    capped: Any = by_max.iloc[int(np.argmin(np.abs(by_max["beta_frac_max"].to_numpy() - 0.55)))]
    headline = [
        f"area-weighted beta_frac in [{low:g}, {high:g}]: P(beta_frac < 0.55) = "
        f"{metrics['p_beta_frac_below_0.55']:.1%}",
        f"blank-host arc S/N > {params.snr_threshold:g} (no CNN, upper bounds): beta_frac up to {high:g}: "
        f"{full.completeness:.1%} ({int(full.k)}/{int(full.n)}); up to {capped.beta_frac_max:g}: "
        f"{capped.completeness:.1%} ({int(capped.k)}/{int(capped.n)})",
    ]
    limits = ", ".join(f"{b:g}" for b in params.beta_frac_maxes)
    caption = (
        f"{params.n_trials} arcs per beta_frac upper limit ({limits}) from prior {params.prior} at theta_E "
        f'{params.theta_e:g}", PSF {params.psf_fwhm_r:g}" (r), S/N proxy on blank hosts (psfdepth '
        f"{params.psfdepth_r:g} nmgy^-2), no CNN"
    )
    figure = _plot(by_max, binned, params, out / "beta_frac_ceiling.png")
    return Outcome(metrics, headline, by_max, [figure], caption=caption)


def _detection(row: Any) -> dict[str, Any]:
    return {
        "k": int(row.k),
        "n": int(row.n),
        "fraction": float(row.completeness),
        "jeffreys68": [float(row.jeffreys68_low), float(row.jeffreys68_high)],
        "mean_snr": float(row.mean_snr),
    }


def _plot(by_max: pd.DataFrame, binned: pd.DataFrame, params: BetaFracCeilingParams, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, table, x, xlabel in (
        (axes[0], by_max, by_max["beta_frac_max"].to_numpy(float), "upper limit of beta_frac"),
        (axes[1], binned, np.arange(len(binned)), "beta_frac bin (widest range)"),
    ):
        y = table["completeness"].to_numpy(float)
        err = np.vstack([y - table["jeffreys68_low"], table["jeffreys68_high"] - y])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"fraction with arc S/N > {params.snr_threshold:g}\n(Jeffreys 68%)")
        ax.set_ylim(0, 1)
    ticks = binned["beta_frac_bin"].astype(str)
    axes[1].set_xticks(np.arange(len(binned)), ticks, rotation=45)
    fig.suptitle(
        f'beta_frac ceiling without a CNN: blank hosts, theta_E {params.theta_e:g}", '
        f'PSF {params.psf_fwhm_r:g}"',
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure(fig, path)
