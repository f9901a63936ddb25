"""Masked pixels: NaN (uncovered or masked) and exactly-zero pixels per cutout, by split and
label. A finder could learn "masks mean lens" if positives carry more of them than
negatives; the difference of proportions (positives - negatives) says whether they do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.diagnostics.sampling import select_rows
from lenscal.plotting import pyplot, save_figure
from lenscal.preprocess import radius_map
from lenscal.progress import progress_bar
from lenscal.stats.intervals import newcombe_difference


class MaskedPixelParams(CheckParams):
    split: str | None = None  # None: every split
    n: int | None = None  # cutouts to look at (None: all)
    seed: int = 42
    central_radius_px: float = 10.0  # "central" NaN: within this many pixels of the centre pixel
    flag_fraction: float = 0.05  # the team's --threshold: cutouts with more NaN pixels are flagged


@register_check("masked_pixels", MaskedPixelParams)
def masked_pixels(ctx: Context, params: MaskedPixelParams, out: Path) -> Outcome:
    """Masked pixels: NaN and zero pixels per cutout by split and label, positives vs negatives."""
    manifest = ctx.hosts.manifest()
    rows = select_rows(manifest, split=params.split, n=params.n, seed=params.seed, what="masked_pixels")
    per_cutout = []
    with progress_bar(len(rows), "masked pixels", enabled=ctx.progress) as advance:
        for start in range(0, len(rows), ctx.chunk):
            block = rows[start : start + ctx.chunk]
            per_cutout.append(pixel_audit(ctx.hosts.read(block), params.central_radius_px))
            advance(len(block))
    audit = pd.concat(per_cutout, ignore_index=True)
    picked = manifest.iloc[rows].reset_index(drop=True)
    audit.insert(0, "galaxy_id", picked["galaxy_id"].astype(str))
    audit.insert(1, "split", picked["split"].astype(str) if "split" in picked else "")
    audit.insert(2, "label", picked["label"].to_numpy() if "label" in picked else -1)
    audit.to_parquet(out / "per_cutout.parquet", index=False)
    summary = (
        audit.groupby(["split", "label"])
        .agg(
            n=("any_nan", "size"),
            with_nan=("any_nan", "sum"),
            with_central_nan=("central_nan", "sum"),
            with_zero=("any_zero", "sum"),
            mean_nan_fraction=("nan_fraction", "mean"),
        )
        .reset_index()
    )
    summary["fraction_with_nan"] = summary["with_nan"] / summary["n"]
    summary.to_csv(out / "summary.csv", index=False)
    metrics: dict[str, object] = {
        "cutouts": len(audit),
        "with_nan": int(audit["any_nan"].sum()),
        "fraction_with_nan": float(audit["any_nan"].mean()),
        "with_central_nan": int(audit["central_nan"].sum()),
        "mean_nan_fraction": float(audit["nan_fraction"].mean()),
        "flag_fraction": params.flag_fraction,
        "above_flag_fraction": int((audit["nan_fraction"] > params.flag_fraction).sum()),
    }
    headline = [
        f"{metrics['with_nan']}/{len(audit)} cutouts hold NaN pixels ({metrics['fraction_with_nan']:.2%}); "
        f"{metrics['with_central_nan']} within {params.central_radius_px:g} px of the centre; "
        f"{metrics['above_flag_fraction']} with more than {params.flag_fraction:.0%} NaN pixels"
    ]
    pos, neg = audit[audit["label"] == 1], audit[audit["label"] == 0]
    if len(pos) and len(neg):
        d, low, high = newcombe_difference(neg["any_nan"].sum(), len(neg), pos["any_nan"].sum(), len(pos))
        metrics.update(nan_fraction_positives_minus_negatives=float(d), newcombe95=[float(low), float(high)])
        headline.append(
            f"cutouts with NaN, positives - negatives: {float(d):+.3f} (Newcombe 95% [{float(low):+.3f}, "
            f"{float(high):+.3f}]); an interval excluding 0 is a shortcut the finder could learn"
        )
    where = f"split {params.split}" if params.split else "every split"
    caption = f"{len(audit)} cutouts of {where} (seed {params.seed})"
    return Outcome(metrics, headline, summary, [_plot(audit, out / "masked_pixels.png")], caption=caption)


def pixel_audit(images: np.ndarray, central_radius_px: float) -> pd.DataFrame:
    """Per cutout of (N, C, H, W): NaN fraction over all bands, any NaN, any NaN within
    ``central_radius_px`` of the centre pixel (H // 2, W // 2), any pixel exactly 0."""
    x = np.asarray(images)
    nan = np.isnan(x)
    centre = (radius_map(x.shape[-2], x.shape[-1]) < central_radius_px).numpy()
    return pd.DataFrame(
        {
            "nan_fraction": nan.reshape(len(x), -1).mean(axis=1),
            "any_nan": nan.reshape(len(x), -1).any(axis=1),
            "central_nan": (nan & centre).reshape(len(x), -1).any(axis=1),
            "any_zero": (x == 0).reshape(len(x), -1).any(axis=1),
        }
    )


def _plot(audit: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    bins = np.linspace(0, max(float(audit["nan_fraction"].max()), 1e-3), 30)
    for label, name in ((0, "negatives"), (1, "positives")):
        values = audit.loc[audit["label"] == label, "nan_fraction"]
        if len(values):
            ax.hist(values, bins=bins, histtype="step", density=True, label=f"{name} (n={len(values)})")
    ax.set_xlabel("NaN pixel fraction per cutout")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
