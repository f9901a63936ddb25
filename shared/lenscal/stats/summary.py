"""One summary of a finder's scores, used by training (every epoch) and `lenscal evaluate`.

Keys: ``auc``; ``pauc``, the standardised partial AUC for FPR <= 0.01 (McClish, sklearn's
``roc_auc_score(max_fpr=0.01)``, what the team reported) and ``pauc_raw``, the area itself
divided by 0.01; ``ece`` (15 equal-mass bins, as the team; ``ece_bins`` records it),
``recall_at_fpr_1e-3``; per threshold (fixed 0.3/0.5/0.7 and FPR-derived 1e-3/1e-4 from
the negatives, each stating how many negatives it rests on): recall overall and per tier as
k/n with Jeffreys 68% and 95% intervals (labelled as such), and the FPR it gives.
Bootstrap (resampling cutouts) gives percentile intervals for auc and pauc when asked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lenscal.data.manifest import TIERS
from lenscal.stats.intervals import jeffreys
from lenscal.stats.metrics import (
    expected_calibration_error,
    fpr_at_threshold,
    partial_auc,
    recall_at_threshold,
    roc_auc,
    standardized_partial_auc,
    threshold_at_fpr,
)

FIXED_THRESHOLDS = (0.3, 0.5, 0.7)
PAUC_MAX_FPR = 0.01
ECE_BINS, ECE_BINNING = 15, "equal_mass"
TARGET_FPRS = (1e-3, 1e-4)


def classifier_summary(
    probabilities: np.ndarray,
    labels: np.ndarray,
    tiers: np.ndarray | None = None,
    *,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    t = np.full(p.shape, -1) if tiers is None else np.asarray(tiers)
    out: dict[str, Any] = {
        "n": int(p.size),
        "n_positive": int(y.sum()),
        "n_negative": int((~y).sum()),
        "auc": roc_auc(p, y),
        "pauc": standardized_partial_auc(p, y, PAUC_MAX_FPR),
        "pauc_raw": partial_auc(p, y, PAUC_MAX_FPR),
        "pauc_max_fpr": PAUC_MAX_FPR,
        "pauc_definition": "McClish standardised (sklearn roc_auc_score max_fpr); pauc_raw = area / max_fpr",
        "ece": expected_calibration_error(p, y, ECE_BINS, ECE_BINNING),
        "ece_bins": ECE_BINS,
        "ece_binning": ECE_BINNING,
    }
    thresholds: dict[str, Any] = {}
    for value in FIXED_THRESHOLDS:
        thresholds[f"p>={value}"] = _at_threshold(p, y, t, value, {"kind": "fixed"})
    for target in TARGET_FPRS:
        found = threshold_at_fpr(p, y, target)
        info = {
            "kind": "fpr",
            "target_fpr": target,
            "n_negatives": found.n_negatives,
            "resolvable": found.resolvable,  # target >= 1 / n_negatives
        }
        thresholds[f"fpr={target:g}"] = _at_threshold(p, y, t, found.threshold, info)
    out["thresholds"] = thresholds
    out["recall_at_fpr_1e-3"] = thresholds["fpr=0.001"]["recall"]
    out["recall_tier_A_at_p0.5"] = thresholds["p>=0.5"]["tiers"].get("A", {}).get("recall")
    out["recall_tier_B_at_p0.5"] = thresholds["p>=0.5"]["tiers"].get("B", {}).get("recall")
    if bootstrap:
        out["bootstrap"] = _bootstrap(p, y, bootstrap, seed)
    return out


def _at_threshold(
    p: np.ndarray, y: np.ndarray, t: np.ndarray, threshold: float, info: dict[str, Any]
) -> dict[str, Any]:
    k, n = recall_at_threshold(p, y, threshold)
    fp, n_neg = fpr_at_threshold(p, y, threshold)
    entry: dict[str, Any] = {**info, "threshold": float(threshold), **_fraction(k, n)}
    entry["fpr"] = fp / n_neg if n_neg else None
    entry["false_positives"] = fp
    tiers = {}
    for code, name in enumerate(TIERS):
        mask = y & (t == code)
        if mask.any():
            tiers[name] = _fraction(int((p[mask] >= threshold).sum()), int(mask.sum()))
    entry["tiers"] = tiers
    return entry


def _fraction(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"k": 0, "n": 0, "recall": None}
    i68, i95 = jeffreys(k, n, 0.68), jeffreys(k, n, 0.95)
    return {
        "k": k,
        "n": n,
        "recall": k / n,
        "jeffreys_68": [i68.low, i68.high],
        "jeffreys_95": [i95.low, i95.high],
    }


def _bootstrap(p: np.ndarray, y: np.ndarray, resamples: int, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    aucs, paucs = [], []
    for _ in range(resamples):
        pick = rng.integers(0, p.size, p.size)
        if y[pick].all() or not y[pick].any():
            continue
        aucs.append(roc_auc(p[pick], y[pick]))
        paucs.append(standardized_partial_auc(p[pick], y[pick], PAUC_MAX_FPR))
    return {
        "auc_95": [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))],
        "pauc_95": [float(np.percentile(paucs, 2.5)), float(np.percentile(paucs, 97.5))],
        "resamples": [float(len(aucs))],
    }
