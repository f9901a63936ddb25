"""Split balance: are train and validation alike in what the finder could learn from other
than arcs? Counts by split x label / tier / pool, and two-sample Kolmogorov-Smirnov tests of
the observing conditions (train vs val, negatives and positives separately)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from lenscal.diagnostics.base import CheckParams, Context, DiagnosticError, Outcome, register_check
from lenscal.plotting import pyplot, save_figure


class SplitBalanceParams(CheckParams):
    #: Numeric manifest columns to compare (those absent are skipped and listed).
    columns: tuple[str, ...] = ("psfsize_r", "psfdepth_r", "ebv", "nobs_z", "flux_r", "shape_r")
    #: Count tables by split and each of these (when present).
    by: tuple[str, ...] = ("label", "tier", "pool", "type")
    reference: str = "train"
    other: str = "val"


@register_check("split_balance", SplitBalanceParams)
def split_balance(ctx: Context, params: SplitBalanceParams, out: Path) -> Outcome:
    """Split balance: counts per split by label/tier/pool, train-vs-val KS tests of conditions."""
    manifest = ctx.hosts.manifest()
    return balance(manifest, params, out)


def balance(manifest: pd.DataFrame, params: SplitBalanceParams, out: Path) -> Outcome:
    for column in ("split", "label"):
        if column not in manifest.columns:
            raise DiagnosticError(f"split_balance: the manifest has no {column!r} column")
    splits = manifest["split"].astype(str)
    counts = []
    for column in [c for c in params.by if c in manifest.columns]:
        table = manifest.groupby([splits, manifest[column].astype(str)], dropna=False).size()
        for (split, value), n in zip(table.index.tolist(), table.to_numpy(), strict=True):
            counts.append({"by": column, "value": value, "split": split, "n": int(n)})
    count_table = pd.DataFrame(counts)
    count_table.to_csv(out / "counts.csv", index=False)
    per_split = (
        manifest.groupby(splits)["label"]
        .agg(["size", "sum"])
        .rename(columns={"size": "n", "sum": "positives"})
    )
    per_split["positive_fraction"] = per_split["positives"] / per_split["n"]
    present = [c for c in params.columns if c in manifest.columns]
    tests = []
    for column in present:
        for label in (0, 1):
            a = _values(manifest, params.reference, label, column)
            b = _values(manifest, params.other, label, column)
            if a.size < 2 or b.size < 2:
                continue
            result = ks_2samp(a, b)
            tests.append(
                {
                    "column": column,
                    "label": label,
                    f"n_{params.reference}": a.size,
                    f"n_{params.other}": b.size,
                    "ks_statistic": float(result.statistic),
                    "p_value": float(result.pvalue),
                }
            )
    ks = pd.DataFrame(tests)
    ks.to_csv(out / "ks_tests.csv", index=False)
    figure = _histograms(manifest, present, params, out / "split_balance.png")
    metrics: dict[str, object] = {
        f"{split}.{key}": (float(v) if key == "positive_fraction" else int(v))
        for split, row in per_split.iterrows()
        for key, v in row.items()
    }
    metrics["columns_compared"] = ",".join(present)
    metrics["columns_missing"] = ",".join(c for c in params.columns if c not in present)
    if len(ks):
        worst: Any = ks.iloc[int(np.argmax(ks["ks_statistic"].to_numpy()))]
        metrics["ks_max_statistic"] = float(worst.ks_statistic)
        metrics["ks_max_column"] = f"{worst.column} (label {worst.label})"
        metrics["ks_min_p_value"] = float(ks["p_value"].min())
    headline = [
        f"{split}: {int(r.n)} cutouts, {int(r.positives)} positives ({r.positive_fraction:.2%})"
        for split, r in per_split.iterrows()
    ]
    if len(ks):
        headline.append(
            f"largest {params.reference}-vs-{params.other} difference: {metrics['ks_max_column']}, "
            f"KS D = {metrics['ks_max_statistic']:.3f} (smallest p = {metrics['ks_min_p_value']:.2g})"
        )
    return Outcome(metrics, headline, ks if len(ks) else None, [figure])


def _values(manifest: pd.DataFrame, split: str, label: int, column: str) -> np.ndarray:
    rows = manifest[(manifest["split"] == split) & (manifest["label"] == label)]
    values = rows[column].to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


def _histograms(manifest: pd.DataFrame, columns: list[str], params: SplitBalanceParams, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, max(len(columns), 1), figsize=(3 * max(len(columns), 1), 2.8), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=False):
        for split, style in ((params.reference, "-"), (params.other, "--")):
            for label, colour in ((0, "tab:blue"), (1, "tab:red")):
                values = _values(manifest, split, label, column)
                if values.size:
                    ax.hist(
                        values,
                        bins=30,
                        density=True,
                        histtype="step",
                        ls=style,
                        color=colour,
                        label=f"{split} {'pos' if label else 'neg'}",
                    )
        ax.set_xlabel(column, fontsize=8)
    axes[0][0].legend()
    fig.tight_layout()
    return save_figure(fig, path)
