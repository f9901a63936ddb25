"""Completeness tables: k detected of n injected, per cell and per marginal, with Jeffreys
intervals (Beta(k + 1/2, n - k + 1/2), equal-tailed; the method is in the column names).

Marginals pool counts (sum k / sum n over the cells they cover), never average fractions:
averaging per-bin fractions weights a bin of 3 injections like a bin of 3,000 (a team
summary reported 2.6% that way where the pooled value was 0.74%). A cell with no hosts has
n = 0 and completeness "no data" (NaN), never 0%.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lenscal.stats.intervals import jeffreys_bounds
from lenscal.stats.metrics import threshold_at_fpr

INTERVAL_COLUMNS = ("jeffreys68_low", "jeffreys68_high", "jeffreys95_low", "jeffreys95_high")


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Add completeness and Jeffreys 68%/95% bounds to a table with columns k and n."""
    out = table.copy()
    k, n = out["k"].to_numpy(np.float64), out["n"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["completeness"] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    out["jeffreys68_low"], out["jeffreys68_high"] = jeffreys_bounds(k, n, 0.68)
    out["jeffreys95_low"], out["jeffreys95_high"] = jeffreys_bounds(k, n, 0.95)
    out["no_data"] = n == 0
    return out


def counts(
    injections: pd.DataFrame,
    by: Sequence[str],
    thresholds: Mapping[str, float],
    *,
    full: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """k and n per group of ``by`` and threshold (detected: probability >= threshold).
    ``full``: every group that exists (one row each), so groups without injections appear
    with n = 0."""
    rows = []
    groups = injections.groupby(list(by), sort=True, dropna=False) if by else [((), injections)]
    found = {(key if isinstance(key, tuple) else (key,)): part for key, part in groups}
    keys = [tuple(r) for r in full[list(by)].itertuples(index=False)] if full is not None else list(found)
    for key in keys:
        part = found.get(tuple(key))
        p = part["probability"].to_numpy() if part is not None else np.empty(0)
        for label, value in thresholds.items():
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "threshold": label,
                    "k": int((p >= value).sum()),
                    "n": int(p.size),
                }
            )
    return with_intervals(pd.DataFrame(rows))


def pooled(table: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Marginal over everything but ``by`` (and the threshold): counts summed, then the
    fraction and intervals of the sums."""
    summed = table.groupby([*by, "threshold"], sort=True)[["k", "n"]].sum().reset_index()
    return with_intervals(summed)


def averaged_fraction(table: pd.DataFrame) -> float:
    """The mean of per-row fractions over rows with data: NOT a completeness (for showing
    why pooling matters; never reported as a result)."""
    rows = table[table["n"] > 0]
    return float((rows["k"] / rows["n"]).mean())


def bin_labels(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """'lo-hi' label of the bin [lo, hi) holding each value (last bin closed); '' outside."""
    e = np.asarray(edges, dtype=np.float64)
    which = np.searchsorted(e, values, side="right") - 1
    which = np.where(values == e[-1], len(e) - 2, which)
    labels = np.array([f"{a:g}-{b:g}" for a, b in itertools.pairwise(e)] + [""], dtype=object)
    return labels[np.where((which >= 0) & (which < len(e) - 1), which, len(e) - 1)]


def detection_thresholds(
    negative_probabilities: np.ndarray,
    *,
    fixed: Sequence[float] = (0.3, 0.5, 0.7),
    fpr_targets: Sequence[float] = (1e-3, 1e-4),
    min_false_positives: int = 10,
    force: bool = False,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Detection thresholds by label: ``p>=t`` for each fixed t, and ``fpr=f`` at the score
    where the negatives' false-positive rate is f, only when enough negatives back it: at
    least ``min_false_positives / f`` of them (i.e. that many false positives at the
    target). Otherwise it is refused (in the info, with the reason) unless ``force``. The
    info states, per FPR target, how many negatives it rests on and how many were needed."""
    thresholds = {f"p>={t:g}": float(t) for t in fixed}
    info: dict[str, Any] = {}
    scores = np.asarray(negative_probabilities)  # kept at its stored precision (threshold_at_fpr)
    for target in fpr_targets:
        label = f"fpr={target:g}"
        needed = int(np.ceil(min_false_positives / target))
        entry: dict[str, Any] = {
            "target_fpr": target,
            "n_negatives": int(scores.size),
            "needed_negatives": needed,
        }
        if scores.size == 0:
            entry["refused"] = "no validation negatives to set it"
        else:
            found = threshold_at_fpr(scores, np.zeros(scores.size, dtype=bool), target)
            entry.update(
                threshold=found.threshold, achieved_fpr=found.achieved_fpr, score_dtype=str(scores.dtype)
            )
            if scores.size < needed and not force:
                entry["refused"] = (
                    f"rests on {scores.size} negatives; {needed} are needed ({min_false_positives} "
                    f"above it at FPR {target:g}); --force-fpr uses it anyway"
                )
            else:
                thresholds[label] = found.threshold
                entry["forced"] = scores.size < needed
        info[label] = entry
    return thresholds, info


def is_forced(label: str, fpr_info: Mapping[str, Any]) -> bool:
    """Whether ``label`` is an FPR threshold that rests on fewer negatives than it needs and
    was used only because it was forced."""
    return bool((fpr_info.get(label) or {}).get("forced"))


def forced_note(label: str, fpr_info: Mapping[str, Any]) -> str:
    """`` (forced: ...)`` after a forced threshold's label; "" otherwise."""
    if not is_forced(label, fpr_info):
        return ""
    entry = fpr_info[label]
    return f" (forced: rests on {entry['n_negatives']:,} negatives, {entry['needed_negatives']:,} needed)"


def mark_forced(table: pd.DataFrame, fpr_info: Mapping[str, Any]) -> pd.DataFrame:
    """The table with a ``forced`` column: True on rows of a forced FPR threshold."""
    out = table.copy()
    out["forced"] = [is_forced(str(t), fpr_info) for t in out["threshold"]]
    return out
