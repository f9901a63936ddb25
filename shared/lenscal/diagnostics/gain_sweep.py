"""Gain sweep: bright arcs with Poisson noise at a range of gains (e-/nmgy) against the
noiseless baseline on the same injections. Noise shrinks as 1/sqrt(gain); at 1e12 it is
nil, so detections must equal the baseline's at every threshold (the team's check that the
noise code converges; their clamp bug would have failed it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import Context, Outcome, register_check
from lenscal.diagnostics.bright_arc import BrightArcSetup, Variant, compare_to_reference, score_variants
from lenscal.diagnostics.sampling import fixed_thresholds
from lenscal.plotting import pyplot, save_figure
from lenscal.selection.tables import counts

CONVERGED_GAIN = 1e12


class GainSweepParams(BrightArcSetup):
    gains: tuple[float, ...] = (50.0, 150.0, 1e3, 1e4, 1e6, CONVERGED_GAIN)  # e-/nmgy


@register_check("gain_sweep", GainSweepParams)
def gain_sweep(ctx: Context, params: GainSweepParams, out: Path) -> Outcome:
    """Gain sweep: Poisson noise at each gain vs the noiseless baseline; gain 1e12 must equal it."""
    variants = (
        Variant(name="noiseless"),
        *(Variant(name=f"gain_{g:g}", poisson_gain=g) for g in params.gains),
    )
    frame = score_variants(ctx, params, variants)
    frame.to_parquet(out / "injections.parquet", index=False)
    thresholds = fixed_thresholds(params.thresholds)
    comparison = compare_to_reference(frame, "noiseless", thresholds)
    comparison["gain"] = comparison["variant"].str.removeprefix("gain_").astype(float)
    comparison.to_csv(out / "vs_noiseless.csv", index=False)
    detected = counts(frame, ["variant"], thresholds)
    detected.to_csv(out / "detection.csv", index=False)
    metrics: dict[str, Any] = {}
    for _, r in comparison.iterrows():
        metrics[f"gain_{r.gain:g}.max_abs_dp"] = float(r.max_abs_dp)
        metrics[f"gain_{r.gain:g}.{r.threshold}.k"] = int(r.k)
        metrics[f"gain_{r.gain:g}.{r.threshold}.identical"] = bool(r.identical)
    for label in thresholds:
        metrics[f"noiseless.{label}.k"] = int(
            comparison.loc[comparison.threshold == label, "k_reference"].iloc[0]
        )
    converged = comparison[np.isclose(comparison["gain"], CONVERGED_GAIN)]
    headline = []
    if len(converged):
        metrics["identical_at_1e12"] = bool(converged["identical"].all())
        metrics["max_abs_dp_at_1e12"] = float(converged["max_abs_dp"].max())
        verdict, same = ("PASS", "the same") if metrics["identical_at_1e12"] else ("FAIL", "different")
        headline.append(
            f"{verdict}: gain 1e12 detects {same} injections as the noiseless baseline at every "
            f"threshold (max |dp| {metrics['max_abs_dp_at_1e12']:.2g})"
        )
    for gain, rows in comparison.groupby("gain"):
        headline.append(
            f"gain {gain:g}: max |dp| {rows.max_abs_dp.iloc[0]:.3g}; "
            + ", ".join(
                f"{t} {int(k)} (noiseless {int(kr)})"
                for t, k, kr in zip(rows.threshold, rows.k, rows.k_reference, strict=True)
            )
        )
    return Outcome(metrics, headline, comparison, [_plot(comparison, out / "gain_sweep.png")])


def _plot(comparison: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.3))
    for threshold, rows in comparison.groupby("threshold", sort=False):
        line = axes[0].plot(rows["gain"], rows["k"], marker="o", label=f"{threshold}")[0]
        axes[0].axhline(rows["k_reference"].iloc[0], color=line.get_color(), ls=":", lw=0.8)
    first = comparison.drop_duplicates("gain")
    axes[1].plot(first["gain"], first["max_abs_dp"], marker="o")
    axes[0].set_ylabel("injections detected (dotted: noiseless)")
    axes[1].set_ylabel("max |p - p_noiseless|")
    axes[1].set_yscale("symlog", linthresh=1e-6)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("gain (e-/nmgy)")
    axes[0].legend()
    fig.tight_layout()
    return save_figure(fig, path)
