"""beta_frac ranges: bright arcs (one source bin, default r 19-20) at theta_E 1.5" with the
source offset beta_frac = beta / theta_E drawn from each range in turn, on the same hosts.
Small beta_frac makes near-caustic arcs and rings, large beta_frac barely-distorted images:
detection against beta_frac shows whether the finder sees arcs or just extra light, and
what the team's 0.1-1.0 vs 0.1-0.4 prior choice does to completeness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import Context, Outcome, register_check
from lenscal.diagnostics.bright_arc import BrightArcSetup, Variant, bright_arc_caption, score_variants
from lenscal.diagnostics.sampling import fixed_thresholds
from lenscal.plotting import pyplot, save_figure
from lenscal.selection.tables import counts


class BetaFracParams(BrightArcSetup):
    mag_bins: tuple[float, ...] = (19.0, 20.0)
    ranges: tuple[tuple[float, float], ...] = (
        (0.1, 0.3),
        (0.3, 0.55),
        (0.55, 0.8),
        (0.8, 1.0),
        (0.1, 0.4),
        (0.1, 1.0),
    )


@register_check("beta_frac", BetaFracParams)
def beta_frac(ctx: Context, params: BetaFracParams, out: Path) -> Outcome:
    """beta_frac ranges: bright-arc detection with beta_frac drawn from each range, same hosts."""
    variants = tuple(Variant(name=f"bf_{lo:g}-{hi:g}", beta_frac_range=(lo, hi)) for lo, hi in params.ranges)
    frame = score_variants(ctx, params, variants)
    frame.to_parquet(out / "injections.parquet", index=False)
    table = counts(frame, ["variant"], fixed_thresholds(params.thresholds))
    order = {v.name: i for i, v in enumerate(variants)}
    table = table.sort_values(["variant"], key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    table.to_csv(out / "detection.csv", index=False)
    metrics: dict[str, Any] = {}
    for _, r in table.iterrows():
        metrics[f"{r.variant}.{r.threshold}"] = {
            "k": int(r.k),
            "n": int(r.n),
            "fraction": float(r.completeness),
        }
    at = table[table["threshold"] == "p>=0.5"]
    headline = [
        "detected at p >= 0.5: "
        + ", ".join(
            f"{r.variant.removeprefix('bf_')} {r.completeness:.1%} ({int(r.k)}/{int(r.n)})"
            for _, r in at.iterrows()
        )
    ]
    caption = bright_arc_caption(frame, params, variants) + " (scored by the CNN)"
    return Outcome(metrics, headline, table, [_plot(table, out / "beta_frac.png")], caption=caption)


def _plot(table: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    variants = list(dict.fromkeys(table["variant"]))
    width = 0.8 / max(table["threshold"].nunique(), 1)
    for j, (threshold, rows) in enumerate(table.groupby("threshold", sort=False)):
        rows = rows.set_index("variant").loc[variants]
        y = rows["completeness"].to_numpy(float)
        err = np.vstack([y - rows["jeffreys68_low"], rows["jeffreys68_high"] - y])
        ax.bar(np.arange(len(variants)) + j * width, y, width, yerr=err, capsize=2, label=str(threshold))
    ax.set_xticks(np.arange(len(variants)) + width, [v.removeprefix("bf_") for v in variants])
    ax.set_xlabel("beta_frac range")
    ax.set_ylabel("fraction detected (Jeffreys 68%)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
