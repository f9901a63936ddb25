"""Classifier metrics on scores (higher = more lens-like) and 0/1 labels.

- ``roc_auc``: Mann-Whitney U / (n_pos n_neg), ties counted half.
- ``partial_auc``: area under the ROC curve for FPR in [0, max_fpr], divided by max_fpr
  (so 1 is perfect and max_fpr/2 is random), with the ROC interpolated linearly at max_fpr.
- ``standardized_partial_auc``: McClish's standardisation of that area, what the team
  reported (sklearn ``roc_auc_score(max_fpr=...)``): 0.5 (1 + (A - A_min) / (A_max - A_min))
  with A_min = max_fpr^2 / 2 (chance) and A_max = max_fpr (perfect), so chance is 0.5.
- ``threshold_at_fpr``: the smallest score threshold whose FPR on the negatives is <= the
  target (detection is ``score >= threshold``); it rests on n_neg negatives, so FPR targets
  below 1/n_neg cannot be resolved and are reported as such.
- ``expected_calibration_error``: sum over bins of (n_b / n) |fraction positive - mean
  probability|, 15 equal-mass bins by default (the team's dhs/calibration.py: edges at the
  probability quantiles, first and last set to 0 and 1, the last bin closed); equal-width
  bins on request.
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


def bce_with_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of ``logits`` against 0/1 ``labels``, computed
    stably (no overflow for large |logit|)."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"logits {x.shape} and labels {y.shape} must be the same non-empty shape")
    return float(np.mean(np.maximum(x, 0.0) - x * y + np.log1p(np.exp(-np.abs(x)))))


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


def standardized_partial_auc(scores: np.ndarray, labels: np.ndarray, max_fpr: float = 0.01) -> float:
    area = partial_auc(scores, labels, max_fpr) * max_fpr
    low, high = 0.5 * max_fpr**2, max_fpr
    return float(0.5 * (1.0 + (area - low) / (high - low)))


@dataclass
class FprThreshold:
    target_fpr: float
    threshold: float
    achieved_fpr: float
    n_negatives: int
    resolvable: bool  # target >= 1 / n_negatives


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> FprThreshold:
    """The threshold at which at most ``target_fpr`` of the negatives score ``>=`` it, chosen
    at the precision the scores come in (float32 scores get a float32-representable
    threshold): counting ``p >= t`` over the scores as stored, in float32 or float64, then
    gives exactly the achieved FPR. (A float64 threshold just above a float32 score rounds
    back onto it when compared in float32, as numpy does with a Python float, and one more
    negative would pass.)"""
    _check(scores, labels)
    raw = np.asarray(scores).reshape(-1)
    dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.dtype(np.float64)
    y = np.asarray(labels).reshape(-1).astype(bool)
    negatives = np.sort(raw.astype(dtype)[~y])[::-1]
    n = negatives.size
    allowed = int(np.floor(target_fpr * n))  # negatives allowed at or above the threshold
    # Just above the (allowed+1)-th highest negative, in the scores' own precision: at most
    # `allowed` negatives pass.
    threshold = negatives[-1] if allowed >= n else np.nextafter(negatives[allowed], dtype.type(np.inf))
    achieved = float((negatives >= threshold).sum() / n) if n else float("nan")
    return FprThreshold(target_fpr, float(threshold), achieved, n, n > 0 and target_fpr >= 1.0 / n)


def recall_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int]:
    """(k detected, n positives) with detection ``score >= threshold``."""
    s, y = _check(scores, labels)
    return int((s[y] >= threshold).sum()), int(y.sum())


def fpr_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int]:
    s, y = _check(scores, labels)
    return int((s[~y] >= threshold).sum()), int((~y).sum())


def calibration_bins(probabilities: np.ndarray, bins: int = 15, binning: str = "equal_mass") -> np.ndarray:
    """Bin index per probability (see the module docstring)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if binning == "equal_mass":
        edges = np.percentile(p, np.linspace(0.0, 100.0, bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
    elif binning == "equal_width":
        edges = np.linspace(0.0, 1.0, bins + 1)
    else:
        raise ValueError(f"binning {binning!r} is not 'equal_mass' or 'equal_width'")
    which = np.full(p.shape, -1)
    for b in range(bins):
        upper = p <= edges[b + 1] if b == bins - 1 else p < edges[b + 1]
        which[(which < 0) & (p >= edges[b]) & upper] = b
    return which


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15, binning: str = "equal_mass"
) -> float:
    p, y = _check(probabilities, labels)
    which = calibration_bins(p, bins, binning)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(total)


def reliability_curve(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15, binning: str = "equal_mass"
) -> dict[str, list[float]]:
    p, y = _check(probabilities, labels)
    which = calibration_bins(p, bins, binning)
    out: dict[str, list[float]] = {"mean_predicted": [], "fraction_positive": [], "count": []}
    for b in range(bins):
        inside = which == b
        if inside.any():
            out["mean_predicted"].append(float(p[inside].mean()))
            out["fraction_positive"].append(float(y[inside].mean()))
            out["count"].append(float(inside.sum()))
    return out
