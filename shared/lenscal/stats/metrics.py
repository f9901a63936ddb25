"""Classifier metrics on scores (higher = more lens-like) and 0/1 labels.

- ``roc_auc``: Mann-Whitney U / (n_pos n_neg), ties counted half.
- ``partial_auc``: area under the ROC curve for FPR in [0, max_fpr], divided by max_fpr
  (so 1 is perfect and max_fpr/2 is random), with the ROC interpolated linearly at max_fpr.
- ``threshold_at_fpr``: the smallest score threshold whose FPR on the negatives is <= the
  target (detection is ``score >= threshold``); it rests on n_neg negatives, so FPR targets
  below 1/n_neg cannot be resolved and are reported as such.
- ``expected_calibration_error``: equal-width bins of predicted probability, weighted by
  bin occupancy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if not np.isfinite(s).all():
        raise ValueError("scores contain non-finite values")
    return s, y


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing, starting at (0, 0)."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, s[distinct]]


def partial_auc(scores: np.ndarray, labels: np.ndarray, max_fpr: float = 0.01) -> float:
    fpr, tpr, _ = roc_curve(scores, labels)
    stop = np.searchsorted(fpr, max_fpr, side="right")
    x, yv = fpr[:stop], tpr[:stop]
    if stop < fpr.size:
        x = np.r_[x, max_fpr]
        yv = np.r_[yv, np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1])]
    return float(np.trapezoid(yv, x) / max_fpr)


@dataclass
class FprThreshold:
    target_fpr: float
    threshold: float
    achieved_fpr: float
    n_negatives: int
    resolvable: bool  # target >= 1 / n_negatives


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> FprThreshold:
    s, y = _check(scores, labels)
    negatives = np.sort(s[~y])[::-1]
    n = negatives.size
    allowed = int(np.floor(target_fpr * n))  # negatives allowed at or above the threshold
    # Just above the (allowed+1)-th highest negative: at most `allowed` negatives pass.
    threshold = float(negatives[-1]) if allowed >= n else float(np.nextafter(negatives[allowed], np.inf))
    achieved = float((negatives >= threshold).sum() / n) if n else float("nan")
    return FprThreshold(target_fpr, threshold, achieved, n, n > 0 and target_fpr >= 1.0 / n)


def recall_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int]:
    """(k detected, n positives) with detection ``score >= threshold``."""
    s, y = _check(scores, labels)
    return int((s[y] >= threshold).sum()), int(y.sum())


def fpr_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int]:
    s, y = _check(scores, labels)
    return int((s[~y] >= threshold).sum()), int((~y).sum())


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    p, y = _check(probabilities, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(total)


def reliability_curve(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> dict[str, list[float]]:
    p, y = _check(probabilities, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out: dict[str, list[float]] = {"mean_predicted": [], "fraction_positive": [], "count": []}
    for b in range(bins):
        inside = which == b
        if inside.any():
            out["mean_predicted"].append(float(p[inside].mean()))
            out["fraction_positive"].append(float(y[inside].mean()))
            out["count"].append(float(inside.sum()))
    return out
