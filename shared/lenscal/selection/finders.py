"""Two finders' selection functions side by side: the same grid run with checkpoint A and
checkpoint B (same seed and hosts, so every injection is made identically for both and each
is a pair), compared by lenscal.selection.compare with Newcombe's paired interval.

A finder comparison refuses runs that differ in anything but the finder (the checkpoint and
the preprocessing it carries): a different prior, seed or treatment would be compared along
with the finder. ``--force`` compares them anyway, and says so.

A fixed probability threshold (p>=0.5) sits at a different false-positive rate for each
finder (a finder that scores everything higher finds more arcs and more impostors alike), so
each threshold's summary carries both finders' false-positive counts on the validation
negatives their runs scored (negatives.parquet); an ``fpr=`` threshold compares them at the
same rate.

Written beside the comparison's tables: ``finders_theta_e.csv`` (both completenesses and
B - A per theta_E bin), ``significant_cells.csv`` (cells whose 95% interval excludes 0, and
which finder wins there), ``finders.json`` and ``finders.png`` (completeness against
theta_E for both, and B - A with its paired interval).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.fsutil import atomic_write_text
from lenscal.selection.compare import Comparison, compare, read_run, write
from lenscal.selection.config import GridError
from lenscal.selection.plots import HEATMAP_THRESHOLD, THETA_LABEL, run_label
from lenscal.stats.intervals import PAIRED_METHOD

#: Definition fields that belong to the finder, not to the grid: they may differ.
FINDER_FIELDS = ("checkpoint.", "preprocess.")


@dataclass
class FinderComparison:
    comparison: Comparison
    model_a: str
    model_b: str
    theta: pd.DataFrame  # per theta_E bin: both completenesses and B - A
    significant: pd.DataFrame
    summary: dict[str, Any]
    out: Path


def confounders(comparison: Comparison) -> dict[str, tuple[Any, Any]]:
    """Differences between the two runs other than the finder's own."""
    return {k: v for k, v in comparison.treatment_differences.items() if not k.startswith(FINDER_FIELDS)}


def compare_finders(
    a: str | Path,
    b: str | Path,
    *,
    out: str | Path,
    threshold: str = HEATMAP_THRESHOLD,
    force: bool = False,
) -> FinderComparison:
    a, b, out = Path(a), Path(b), Path(out)
    meta_a, meta_b = read_run(a), read_run(b)
    comparison = compare(a, b, force=force)
    others = confounders(comparison)
    if others and not force:
        listed = "; ".join(f"{k}: {va} vs {vb}" for k, (va, vb) in others.items())
        raise GridError(
            f"{a.name} and {b.name} differ in more than the finder ({listed}): not a finder comparison; "
            "--force compares them anyway"
        )
    labels = set(comparison.cells["threshold"])
    if threshold not in labels:
        raise GridError(f"no threshold {threshold!r} in both runs; they share {', '.join(sorted(labels))}")
    model_a, model_b = meta_a["checkpoint"]["model"], meta_b["checkpoint"]["model"]
    write(comparison, out, threshold, run_label(meta_a), run_label(meta_b))
    theta = _theta_table(a, b, comparison)
    significant = _significant(comparison)
    summary = _summary(
        comparison, model_a, model_b, significant, others, _false_positives(a), _false_positives(b)
    )
    theta.to_csv(out / "finders_theta_e.csv", index=False)
    significant.to_csv(out / "significant_cells.csv", index=False)
    atomic_write_text(out / "finders.json", json.dumps(summary, indent=1, default=str) + "\n")
    result = FinderComparison(comparison, model_a, model_b, theta, significant, summary, out)
    _figure(result, threshold, meta_a)
    return result


def _theta_table(a: Path, b: Path, comparison: Comparison) -> pd.DataFrame:
    keep = ["theta_e_bin", "threshold", "k", "n", "completeness", "jeffreys95_low", "jeffreys95_high"]
    ta, tb = (pd.read_csv(d / "marginal_theta_e.csv")[keep] for d in (a, b))
    both = ta.merge(tb, on=["theta_e_bin", "threshold"], suffixes=("_a", "_b"))
    diff = comparison.marginals["theta_e"][["theta_e_bin", "threshold", "difference", "newcombe95_low",
                                            "newcombe95_high"]]  # fmt: skip
    both = both.merge(diff, on=["theta_e_bin", "threshold"], how="left")
    both["b_minus_a_excludes_0"] = (both["newcombe95_low"] > 0) | (both["newcombe95_high"] < 0)
    return both


def _false_positives(directory: Path) -> dict[str, list[int]]:
    """Per threshold label: [negatives at or above it, negatives] of the run's own scores."""
    path = directory / "negatives.parquet"
    if not path.is_file():
        return {}
    scores = pd.read_parquet(path, columns=["probability"])["probability"].to_numpy()
    thresholds = json.loads((directory / "metrics.json").read_text())["thresholds"]
    return {label: [int((scores >= value).sum()), int(scores.size)] for label, value in thresholds.items()}


def _significant(comparison: Comparison) -> pd.DataFrame:
    cells = comparison.cells
    data = cells[~cells["no_data"]]
    better_b, better_a = data["newcombe95_low"] > 0, data["newcombe95_high"] < 0
    out = data[better_b | better_a].copy()
    out["better"] = np.where(out["newcombe95_low"] > 0, "B", "A")
    keep = ["theta_e_bin", "psf_bin", "depth_bin", "threshold", "k_a", "n_a", "k_b", "n_b", "difference",
            "newcombe95_low", "newcombe95_high", "better"]  # fmt: skip
    return out[keep].reset_index(drop=True)


def _summary(
    comparison: Comparison,
    model_a: str,
    model_b: str,
    significant: pd.DataFrame,
    others: dict[str, Any],
    false_a: dict[str, list[int]],
    false_b: dict[str, list[int]],
) -> dict[str, Any]:
    cells = comparison.cells
    per_threshold = {}
    for label, part in cells.groupby("threshold", sort=True):
        with_data = int((~part["no_data"]).sum())
        wins = significant[significant["threshold"] == label]["better"].value_counts()
        overall: Any = comparison.marginals["overall"].set_index("threshold").loc[label]  # one row
        per_threshold[str(label)] = {
            "a": [int(overall.k_a), int(overall.n_a)],
            "b": [int(overall.k_b), int(overall.n_b)],
            "b_minus_a": float(overall.difference),
            "newcombe95": [float(overall.newcombe95_low), float(overall.newcombe95_high)],
            "cells_with_data": with_data,
            "cells_b_better": int(wins.get("B", 0)),
            "cells_a_better": int(wins.get("A", 0)),
            "cells_indistinguishable": with_data - int(wins.sum()),
            "false_positives_a": false_a.get(str(label)),  # [k, n] validation negatives at or above it
            "false_positives_b": false_b.get(str(label)),
        }
    return {
        "a": {"run": str(comparison.a), "model": model_a},
        "b": {"run": str(comparison.b), "model": model_b},
        "method": comparison.method,
        "pairing": comparison.pairing,
        "differences_besides_the_finder": {k: list(v) for k, v in others.items()},
        "thresholds": per_threshold,
    }


def _figure(result: FinderComparison, threshold: str, meta_a: dict[str, Any]) -> Path:
    from lenscal.plotting import pyplot, save_figure

    plt = pyplot()
    rows = result.theta.loc[result.theta["threshold"] == threshold].sort_values("theta_e_bin")
    rows = rows.loc[(rows["n_a"] > 0) & (rows["n_b"] > 0)]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 7.0), sharex=True, height_ratios=[3, 2], layout="constrained"
    )
    finders = (("a", result.model_a, "#1f77b4", -0.01), ("b", result.model_b, "#d62728", 0.01))
    for suffix, model, colour, shift in finders:
        x = rows["theta_e_bin"] + shift
        y = rows[f"completeness_{suffix}"]
        err = [y - rows[f"jeffreys95_low_{suffix}"], rows[f"jeffreys95_high_{suffix}"] - y]
        false = result.summary["thresholds"][threshold].get(f"false_positives_{suffix}")
        fpr = f" (false positives {false[0]}/{false[1]} negatives)" if false else ""
        top.errorbar(
            x, y, yerr=err, fmt="o-", capsize=3, color=colour, label=f"{suffix.upper()} = {model}{fpr}"
        )
    top.set_ylabel(f"completeness at {threshold}\n(Jeffreys 95%)")
    top.set_ylim(-0.02, 1.05)
    top.grid(alpha=0.3)
    top.legend(loc="best")
    paired = result.comparison.method == PAIRED_METHOD
    d = rows["difference"]
    excludes = rows["b_minus_a_excludes_0"].to_numpy(bool)
    err = [d - rows["newcombe95_low"], rows["newcombe95_high"] - d]
    bottom.errorbar(rows["theta_e_bin"], d, yerr=err, fmt="none", capsize=3, color="#444444")
    bottom.scatter(rows["theta_e_bin"][excludes], d[excludes], color="#2ca02c", zorder=3,
                   label="95% interval excludes 0")  # fmt: skip
    bottom.scatter(rows["theta_e_bin"][~excludes], d[~excludes], facecolor="white", edgecolor="#444444",
                   zorder=3, label="consistent with 0")  # fmt: skip
    bottom.axhline(0.0, color="black", lw=0.8)
    bottom.set_ylabel("B − A")
    bottom.set_xlabel(THETA_LABEL)
    bottom.grid(alpha=0.3)
    bottom.legend(loc="best")
    label = run_label(meta_a)
    fig.suptitle(
        f"Finder comparison on grid {label.name} (preset {label.preset}) at {threshold}\n"
        f"pooled over PSF and depth; B − A with "
        f"{'paired (same injections)' if paired else 'unpaired'} Newcombe 95% intervals"
    )
    return save_figure(fig, result.out / "finders.png", demo=label.demo, mock=label.mock,
                       forced=[t for t in label.forced if t == threshold])  # fmt: skip
