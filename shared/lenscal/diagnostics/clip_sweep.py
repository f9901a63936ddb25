"""Clip-range sweep: the validation set scored with the clip range changed at scoring time
(default 10, 20, 50, 100 MAD units): AUC, recall and FPR at each threshold per clip range.
A finder that only looks at faint structure barely moves; one that keys on bright cores
(clipped at 10) changes as the clip opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.diagnostics.sampling import fixed_thresholds, labelled_rows, recall_and_fpr, score_rows
from lenscal.plotting import pyplot, save_figure
from lenscal.preprocess import PreprocessOverride
from lenscal.stats.metrics import roc_auc


class ClipSweepParams(CheckParams):
    clip_ranges: tuple[float, ...] = (10.0, 20.0, 50.0, 100.0)  # MAD units
    split: str = "val"
    n_negatives: int | None = None
    seed: int = 42
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)


@register_check("clip_sweep", ClipSweepParams)
def clip_sweep(ctx: Context, params: ClipSweepParams, out: Path) -> Outcome:
    """Clip-range sweep: AUC, recall and FPR of the validation set per scoring-time clip range."""
    rows = labelled_rows(
        ctx, split=params.split, n_negatives=params.n_negatives, seed=params.seed, what="clip_sweep"
    )
    picked = ctx.hosts.manifest().iloc[rows]
    labels = picked["label"].to_numpy().astype(bool)
    thresholds = fixed_thresholds(params.thresholds)
    scores: dict[str, np.ndarray] = {"galaxy_id": picked["galaxy_id"].astype(str).to_numpy(), "label": labels}
    tables, aucs = [], {}
    for clip in params.clip_ranges:
        override = PreprocessOverride(clip_range=clip)
        p = score_rows(ctx, rows, override=override, label=f"clip {clip:g}").probabilities
        scores[f"p_clip{clip:g}"] = p
        aucs[clip] = roc_auc(p, labels)
        table = recall_and_fpr(p, labels, thresholds)
        table.insert(0, "clip_range", clip)
        tables.append(table)
    pd.DataFrame(scores).to_parquet(out / "scores.parquet", index=False)
    table = pd.concat(tables, ignore_index=True)
    table["auc"] = table["clip_range"].map(aucs)
    table.to_csv(out / "clip_sweep.csv", index=False)
    metrics: dict[str, object] = {f"clip{c:g}.auc": a for c, a in aucs.items()}
    for _, r in table.iterrows():
        metrics[f"clip{r.clip_range:g}.{r.threshold}.recall"] = float(r.completeness)
        metrics[f"clip{r.clip_range:g}.{r.threshold}.k"] = int(r.k)
        metrics[f"clip{r.clip_range:g}.{r.threshold}.fpr"] = None if pd.isna(r.fpr) else float(r.fpr)
    base = params.clip_ranges[0]
    headline = [
        ", ".join(f"clip {c:g}: AUC {a:.4f}" for c, a in aucs.items()),
        ", ".join(
            f"clip {r.clip_range:g}: {int(r.k)}/{int(r.n)}"
            for _, r in table[table["threshold"] == "p>=0.5"].iterrows()
        )
        + " positives at p >= 0.5",
    ]
    metrics["max_abs_dp_vs_first"] = max(
        float(np.max(np.abs(scores[f"p_clip{c:g}"] - scores[f"p_clip{base:g}"]))) for c in params.clip_ranges
    )
    caption = (
        f"{int(labels.sum())} {params.split} lenses and {int((~labels).sum())} negatives rescored at clip "
        + ", ".join(f"{c:g}" for c in params.clip_ranges)
    )
    return Outcome(metrics, headline, table, [_plot(table, out / "clip_sweep.png")], caption=caption)


def _plot(table: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.3))
    for threshold, rows in table.groupby("threshold", sort=False):
        y = rows["completeness"].to_numpy(float)
        err = np.vstack([y - rows["jeffreys68_low"], rows["jeffreys68_high"] - y])
        axes[0].errorbar(rows["clip_range"], y, yerr=err, marker="o", capsize=2, label=str(threshold))
        axes[1].plot(rows["clip_range"], rows["fpr"], marker="o", label=str(threshold))
    for ax, label in zip(axes, ("recall (Jeffreys 68%)", "false-positive rate"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("clip range (MAD units)")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
