"""The normalisation annulus, two checks.

``annulus_statistics``: per cutout, the r-band median and MAD (median |x - median|, no
1.4826 factor, as preprocessing) of the finite pixels in each annulus (default the gen1-4
(20, 32) px and gen5 (32.5, 45) px), their paired differences, KS tests between the two
annuli's distributions, correlation of the shift with PSF size and depth, and the shift for
positives vs negatives. A shift that differs by label is a real-vs-injection mismatch.

``mismatched_annulus``: the validation set scored with the model's own annulus and with the
other one (a preprocessing override): AUC, recall and FPR at each threshold, and how many
positives change detection. A finder whose numbers barely move does not depend on it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, pearsonr

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.diagnostics.sampling import (
    fixed_thresholds,
    labelled_rows,
    recall_and_fpr,
    score_rows,
    select_rows,
)
from lenscal.plotting import pyplot, save_figure
from lenscal.preprocess import ANNULUS_GEN1_4, ANNULUS_GEN5, PreprocessOverride, annulus_indices
from lenscal.progress import progress_bar
from lenscal.stats.intervals import newcombe_paired_difference
from lenscal.stats.metrics import roc_auc

BANDS = {"g": 0, "r": 1, "z": 2}


class AnnulusStatisticsParams(CheckParams):
    annuli: tuple[tuple[float, float], tuple[float, float]] = (ANNULUS_GEN1_4, ANNULUS_GEN5)  # px
    split: str = "val"
    n: int = 1000
    seed: int = 42
    band: Literal["g", "r", "z"] = "r"


@register_check("annulus_statistics", AnnulusStatisticsParams)
def annulus_statistics(ctx: Context, params: AnnulusStatisticsParams, out: Path) -> Outcome:
    """Annulus statistics: median and MAD in two annuli per cutout, paired shifts, by label and condition."""
    manifest = ctx.hosts.manifest()
    rows = select_rows(manifest, split=params.split, n=params.n, seed=params.seed, what="annulus_statistics")
    names = [_name(a) for a in params.annuli]
    columns: dict[str, list[np.ndarray]] = {f"{s}_{n}": [] for n in names for s in ("median", "mad")}
    with progress_bar(len(rows), "annulus statistics", enabled=ctx.progress) as advance:
        for start in range(0, len(rows), ctx.chunk):
            block = rows[start : start + ctx.chunk]
            band = ctx.hosts.read(block)[:, BANDS[params.band]].astype(np.float64)
            for name, (r_in, r_out) in zip(names, params.annuli, strict=True):
                median, mad = ring_median_mad(band, r_in, r_out)
                columns[f"median_{name}"].append(median)
                columns[f"mad_{name}"].append(mad)
            advance(len(block))
    picked = manifest.iloc[rows].reset_index(drop=True)
    frame = pd.DataFrame({k: np.concatenate(v) for k, v in columns.items()})
    for column in ("galaxy_id", "label", "psfsize_r", "psfdepth_r"):
        if column in picked.columns:
            frame[column] = picked[column].to_numpy()
    frame.to_parquet(out / "per_cutout.parquet", index=False)
    a, b = names
    frame["median_shift"] = frame[f"median_{b}"] - frame[f"median_{a}"]
    frame["mad_shift"] = frame[f"mad_{b}"] - frame[f"mad_{a}"]
    valid = frame.dropna(subset=["median_shift", "mad_shift"])
    metrics: dict[str, object] = {"cutouts": len(frame), "paired": len(valid), "band": params.band}
    for name in names:
        metrics[f"{name}.median_of_medians"] = float(valid[f"median_{name}"].median())
        metrics[f"{name}.median_of_mads"] = float(valid[f"mad_{name}"].median())
    for what in ("median", "mad"):
        shift = valid[f"{what}_shift"]
        metrics[f"{what}_shift.mean"] = float(shift.mean())
        metrics[f"{what}_shift.median"] = float(shift.median())
        if len(valid) > 10:
            ks = ks_2samp(valid[f"{what}_{a}"], valid[f"{what}_{b}"])
            metrics[f"{what}_ks.statistic"], metrics[f"{what}_ks.p_value"] = (
                float(ks.statistic),
                float(ks.pvalue),
            )
        for condition in ("psfsize_r", "psfdepth_r"):
            x = valid[condition].to_numpy(np.float64) if condition in valid else np.empty(0)
            ok = np.isfinite(x)
            if ok.sum() > 20 and np.ptp(x[ok]) > 0:
                r, p = pearsonr(x[ok], shift.to_numpy()[ok])
                metrics[f"{what}_shift_vs_{condition}.pearson_r"] = float(r)
                metrics[f"{what}_shift_vs_{condition}.p_value"] = float(p)
        if "label" in valid:
            for label, tag in ((1, "positives"), (0, "negatives")):
                part = shift[valid["label"] == label]
                if len(part):
                    metrics[f"{what}_shift.{tag}_mean"] = float(part.mean())
    headline = [
        f"r-band MAD, median over cutouts: {a} {metrics[f'{a}.median_of_mads']:.4g}, "
        f"{b} {metrics[f'{b}.median_of_mads']:.4g} nmgy ({len(valid)} cutouts)",
        f"median shift {b} - {a}: {metrics['median_shift.mean']:+.3g} nmgy (mean); MAD shift "
        f"{metrics['mad_shift.mean']:+.3g} nmgy",
    ]
    if "mad_shift.positives_mean" in metrics and "mad_shift.negatives_mean" in metrics:
        headline.append(
            f"MAD shift positives {metrics['mad_shift.positives_mean']:+.3g} vs negatives "
            f"{metrics['mad_shift.negatives_mean']:+.3g} nmgy"
        )
    caption = (
        f"{len(valid)} {params.split} cutouts (seed {params.seed}), {params.band} band, "
        f"annuli {names[0]} and {names[1]}"
    )
    return Outcome(
        metrics, headline, None, [_plot(valid, names, out / "annulus_statistics.png")], caption=caption
    )


def ring_median_mad(band: np.ndarray, r_in: float, r_out: float) -> tuple[np.ndarray, np.ndarray]:
    """Per (H, W) image of (N, H, W): median and MAD of the finite pixels with r_in <= r <
    r_out about the centre pixel (H // 2, W // 2); NaN when fewer than 10 are finite."""
    n, h, w = band.shape
    idx = annulus_indices(h, w, r_in, r_out, "cpu").numpy()  # type: ignore[arg-type]
    ring = band.reshape(n, h * w)[:, idx]
    with np.errstate(all="ignore"):
        median = np.nanmedian(ring, axis=1)
        mad = np.nanmedian(np.abs(ring - median[:, None]), axis=1)
    few = np.isfinite(ring).sum(axis=1) < 10
    return np.where(few, np.nan, median), np.where(few, np.nan, mad)


def _name(annulus: tuple[float, float]) -> str:
    return f"{annulus[0]:g}-{annulus[1]:g}px"


def _plot(frame: pd.DataFrame, names: list[str], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, what in zip(axes, ("median", "mad"), strict=True):
        a, b = frame[f"{what}_{names[0]}"], frame[f"{what}_{names[1]}"]
        labels = frame["label"] if "label" in frame else pd.Series(0, index=frame.index)
        for label, colour in ((0, "tab:blue"), (1, "tab:red")):
            pick = labels == label
            ax.scatter(a[pick], b[pick], s=4, c=colour, label="positives" if label else "negatives")
        lo, hi = float(np.nanmin([a.min(), b.min()])), float(np.nanmax([a.max(), b.max()]))
        ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
        ax.set_xlabel(f"{what} in {names[0]} (nmgy)", fontsize=8)
        ax.set_ylabel(f"{what} in {names[1]} (nmgy)", fontsize=8)
    axes[0].legend()
    fig.tight_layout()
    return save_figure(fig, path)


class MismatchedAnnulusParams(CheckParams):
    #: The annulus to score with instead (px); None: the other of (20, 32) and (32.5, 45).
    annulus: tuple[float, float] | None = None
    split: str = "val"
    n_positives: int | None = None  # None: every lens of the split
    n_negatives: int | None = None
    seed: int = 42
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)


@register_check("mismatched_annulus", MismatchedAnnulusParams)
def mismatched_annulus(ctx: Context, params: MismatchedAnnulusParams, out: Path) -> Outcome:
    """Mismatched annulus: the validation set scored with the model's annulus and with the other one."""
    spec = ctx.scorer.model_info(ctx.model)[0].spec
    own = (spec.annulus_r_in, spec.annulus_r_out)
    other = params.annulus or (ANNULUS_GEN5 if own == ANNULUS_GEN1_4 else ANNULUS_GEN1_4)
    rows = labelled_rows(
        ctx,
        split=params.split,
        n_negatives=params.n_negatives,
        n_positives=params.n_positives,
        seed=params.seed,
        what="mismatched",
    )
    labels = ctx.hosts.manifest()["label"].to_numpy()[rows].astype(bool)
    matched = score_rows(ctx, rows, label="own annulus").probabilities
    override = PreprocessOverride(annulus_r_in=other[0], annulus_r_out=other[1])
    mismatched = score_rows(ctx, rows, override=override, label="other annulus").probabilities
    pd.DataFrame({"label": labels, "p_own": matched, "p_other": mismatched}).to_parquet(
        out / "scores.parquet", index=False
    )
    thresholds = fixed_thresholds(params.thresholds)
    tables = []
    for name, p in (("own", matched), ("other", mismatched)):
        table = recall_and_fpr(p, labels, thresholds)
        table.insert(0, "annulus", _name(own if name == "own" else other))
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / "recall_fpr.csv", index=False)
    metrics: dict[str, object] = {"own_annulus": _name(own), "other_annulus": _name(other)}
    headline = []
    for name, p in (("own", matched), ("other", mismatched)):
        metrics[f"{name}.auc"] = roc_auc(p, labels)
    metrics["max_abs_dp"] = float(np.max(np.abs(mismatched - matched)))
    for label, value in thresholds.items():
        flips = int(((matched[labels] >= value) != (mismatched[labels] >= value)).sum())
        metrics[f"{label}.positives_changing_detection"] = flips
        # the same lenses under both annuli: the paired change in recall (the team's "drop")
        own_hit, other_hit = matched[labels] >= value, mismatched[labels] >= value
        d, low, high = newcombe_paired_difference(
            int((own_hit & other_hit).sum()),
            int((own_hit & ~other_hit).sum()),
            int((~own_hit & other_hit).sum()),
            int((~own_hit & ~other_hit).sum()),
        )
        metrics[f"recall_change.{label}"] = {
            "difference": float(d),
            "newcombe95_paired": [float(low), float(high)],
            "n": int(labels.sum()),
        }
    for _, r in table.iterrows():
        metrics[f"{r.annulus}.{r.threshold}.recall"] = float(r.completeness)
        metrics[f"{r.annulus}.{r.threshold}.fpr"] = None if pd.isna(r.fpr) else float(r.fpr)
    headline.append(
        f"AUC {metrics['own.auc']:.4f} with the model's annulus {_name(own)}, "
        f"{metrics['other.auc']:.4f} with {_name(other)}; max |dp| {metrics['max_abs_dp']:.3g}"
    )
    caption = (
        f"{int(labels.sum())} lenses and {int((~labels).sum())} negatives ({params.split}, seed "
        f"{params.seed}) scored with the model's annulus {_name(own)} and with {_name(other)}"
    )
    figure = _scatter(matched, mismatched, labels, own, other, out)
    return Outcome(metrics, headline, table, [figure], caption=caption)


def _scatter(a: np.ndarray, b: np.ndarray, labels: np.ndarray, own: tuple, other: tuple, out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(a[~labels], b[~labels], s=4, label="negatives")
    ax.scatter(a[labels], b[labels], s=8, c="tab:red", label="positives")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel(f"p, annulus {_name(own)} (model's)")
    ax.set_ylabel(f"p, annulus {_name(other)}")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out / "mismatched_annulus.png")
