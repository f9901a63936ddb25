"""Real-lens recall (D05 step 10): the validation lenses scored, recall per tier (Tier A,
Tier B, all) at the fixed thresholds and at those set by FPR on the validation negatives
(each FPR threshold states how many negatives it rests on and is refused, as in the grids,
when too few back it), with Jeffreys 68% and 95% intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.data.manifest import TIERS
from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.diagnostics.sampling import detections, labelled_rows, score_rows
from lenscal.plotting import pyplot, save_figure
from lenscal.selection.tables import detection_thresholds, forced_note, mark_forced


class TierRecallParams(CheckParams):
    split: str = "val"
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    fpr_targets: tuple[float, ...] = (1e-3, 1e-4)
    min_false_positives: int = 10
    force_fpr: bool = False
    n_negatives: int | None = None  # None: every negative of the split
    seed: int = 42


@register_check("tier_recall", TierRecallParams)
def tier_recall(ctx: Context, params: TierRecallParams, out: Path) -> Outcome:
    """Real-lens recall per tier at fixed and FPR-set thresholds, with Jeffreys intervals."""
    rows = labelled_rows(
        ctx, split=params.split, n_negatives=params.n_negatives, seed=params.seed, what="tier_recall"
    )
    manifest = ctx.hosts.manifest().iloc[rows].reset_index(drop=True)
    scored = score_rows(ctx, rows, label="real lenses and negatives")
    labels = manifest["label"].to_numpy().astype(bool)
    tiers = manifest["tier"].astype(str).to_numpy() if "tier" in manifest else np.full(len(rows), "")
    frame = pd.DataFrame(
        {"galaxy_id": manifest["galaxy_id"].astype(str), "label": labels, "tier": np.where(labels, tiers, "")}
    )
    frame["logit"], frame["probability"] = scored.logits, scored.probabilities
    frame.to_parquet(out / "scores.parquet", index=False)
    thresholds, fpr_info = detection_thresholds(
        scored.probabilities[~labels],
        fixed=params.thresholds,
        fpr_targets=params.fpr_targets,
        min_false_positives=params.min_false_positives,
        force=params.force_fpr,
    )
    groups = {f"tier_{t}": labels & (tiers == t) for t in TIERS} | {"all": labels}
    tables = []
    for name, mask in groups.items():
        if mask.any():
            table = detections(scored.probabilities[mask], thresholds)
            table.insert(0, "lenses", name)
            tables.append(table)
    table = mark_forced(pd.concat(tables, ignore_index=True), fpr_info)
    table.to_csv(out / "recall.csv", index=False)
    metrics: dict[str, Any] = {"negatives": int((~labels).sum()), "fpr_thresholds": fpr_info}
    for _, r in table.iterrows():
        metrics[f"{r.lenses}.{r.threshold}"] = {
            "k": int(r.k),
            "n": int(r.n),
            "recall": float(r.completeness),
            "jeffreys68": [float(r.jeffreys68_low), float(r.jeffreys68_high)],
            "jeffreys95": [float(r.jeffreys95_low), float(r.jeffreys95_high)],
            "forced": bool(r.forced),
        }
    headline = [
        f"{r.lenses}: recall {r.completeness:.1%} ({int(r.k)}/{int(r.n)}) at p >= 0.5, Jeffreys 68% "
        f"[{r.jeffreys68_low:.1%}, {r.jeffreys68_high:.1%}]"
        for _, r in table[table["threshold"] == "p>=0.5"].iterrows()
    ]
    for label, info in fpr_info.items():
        if "refused" in info:
            headline.append(f"{label}: not used: {info['refused']}")
        elif info.get("forced"):
            headline.append(f"{label}{forced_note(label, fpr_info)}")
    caption = (
        f"{int(labels.sum())} {params.split} lenses ("
        + ", ".join(f"{int((labels & (tiers == t)).sum())} tier {t}" for t in TIERS)
        + f") and {int((~labels).sum())} negatives scored"
    )
    return Outcome(metrics, headline, table, [_plot(table, out / "tier_recall.png")], caption=caption)


def _plot(table: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    labels = list(dict.fromkeys(table["threshold"]))
    groups = list(dict.fromkeys(table["lenses"]))
    width = 0.8 / len(groups)
    for j, group in enumerate(groups):
        rows = table[table["lenses"] == group].set_index("threshold").reindex(labels)
        y = rows["completeness"].to_numpy(float)
        err = np.vstack([y - rows["jeffreys68_low"], rows["jeffreys68_high"] - y])
        ax.bar(np.arange(len(labels)) + j * width, y, width, yerr=err, capsize=2, label=group)
    ax.set_xticks(np.arange(len(labels)) + width * (len(groups) - 1) / 2, labels)
    ax.set_ylabel("recall (Jeffreys 68%)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
