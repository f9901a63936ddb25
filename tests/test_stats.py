"""Metrics against scikit-learn and closed forms; intervals against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, norm
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from lenscal.stats.intervals import clopper_pearson, jeffreys, wilson
from lenscal.stats.metrics import (
    expected_calibration_error,
    partial_auc,
    roc_auc,
    standardized_partial_auc,
    threshold_at_fpr,
)
from lenscal.stats.summary import classifier_summary


@pytest.fixture()
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.random(3000) < 0.1
    scores = np.round(rng.normal(labels * 1.5, 1.0), 2)  # rounding makes ties
    return scores, labels


def test_auc_matches_sklearn_with_ties(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_partial_auc_matches_trapezoid_on_sklearn_curve(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    keep = fpr <= 0.01
    x, v = np.r_[fpr[keep], 0.01], np.r_[tpr[keep], np.interp(0.01, fpr, tpr)]
    assert partial_auc(s, y, 0.01) == pytest.approx(np.trapezoid(v, x) / 0.01, abs=1e-12)


def test_threshold_at_fpr_counts_negatives() -> None:
    negatives = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    scores = np.r_[negatives, [0.9995, 0.5]]
    labels = np.r_[np.zeros(1000, bool), [True, True]]
    found = threshold_at_fpr(scores, labels, 1e-3)
    assert found.achieved_fpr == pytest.approx(1e-3) and found.n_negatives == 1000 and found.resolvable
    assert 0.998 < found.threshold <= 0.999
    tiny = threshold_at_fpr(scores, labels, 1e-4)
    assert tiny.achieved_fpr == 0.0 and not tiny.resolvable  # 1e-4 needs >= 10,000 negatives


def test_ece_by_hand() -> None:
    p = np.array([0.05, 0.05, 0.95, 0.95])
    y = np.array([0, 1, 1, 1])
    # Bin [0, .1): mean p .05, fraction .5 -> |.45| * 2/4; bin [.9, 1]: |.95 - 1| * 2/4.
    assert expected_calibration_error(p, y, bins=10, binning="equal_width") == pytest.approx(
        0.45 * 0.5 + 0.05 * 0.5
    )


def test_standardized_partial_auc_is_sklearns(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    assert standardized_partial_auc(s, y, 0.01) == pytest.approx(roc_auc_score(y, s, max_fpr=0.01), abs=1e-12)
    summary = classifier_summary(1 / (1 + np.exp(-s)), y)
    assert summary["pauc"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.01), abs=1e-12)
    assert summary["pauc_raw"] == pytest.approx(partial_auc(s, y, 0.01), abs=1e-12)
    assert summary["pauc"] != pytest.approx(summary["pauc_raw"], abs=0.01)  # they differ in meaning


def team_ece(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> float:
    """The team's compute_ece (dhs/calibration.py), equal-mass bins, transcribed."""
    edges = np.percentile(y_prob, np.linspace(0, 1, n_bins + 1) * 100)
    edges[0], edges[-1] = 0.0, 1.0
    ece = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        mask = (y_prob >= lo) & (y_prob < hi) if b < n_bins - 1 else (y_prob >= lo) & (y_prob <= hi)
        if mask.sum():
            ece += mask.sum() / len(y_true) * abs(y_true[mask].mean() - y_prob[mask].mean())
    return float(ece)


def test_ece_is_the_teams_fifteen_equal_mass_bins(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    p = 1 / (1 + np.exp(-s))
    assert expected_calibration_error(p, y) == pytest.approx(team_ece(y.astype(float), p), abs=1e-12)
    summary = classifier_summary(p, y)
    assert summary["ece"] == pytest.approx(team_ece(y.astype(float), p), abs=1e-12)
    assert (summary["ece_bins"], summary["ece_binning"]) == (15, "equal_mass")


def test_intervals_against_scipy_and_closed_forms() -> None:
    k, n = 3755, 110000  # D04's marginal completeness at p >= 0.3
    j = jeffreys(k, n, 0.95)
    assert (j.low, j.high) == pytest.approx(
        (beta.ppf(0.025, k + 0.5, n - k + 0.5), beta.ppf(0.975, k + 0.5, n - k + 0.5))
    )
    assert j.estimate == pytest.approx(0.0341, abs=1e-4) and j.method == "jeffreys"
    # Clopper-Pearson with k = 0 has the closed form 1 - (alpha/2)^(1/n).
    assert clopper_pearson(0, 20, 0.95).high == pytest.approx(1 - 0.025 ** (1 / 20))
    z = norm.ppf(0.975)
    p, m = 7 / 50, 50
    centre = (p + z * z / (2 * m)) / (1 + z * z / m)
    half = z / (1 + z * z / m) * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    w = wilson(7, 50, 0.95)
    assert (w.low, w.high) == pytest.approx((centre - half, centre + half))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        jeffreys(5, 3)


def test_summary_reports_tiers_and_threshold_provenance(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    probabilities = 1 / (1 + np.exp(-s))
    tiers = np.where(y, np.arange(y.size) % 2, -1)
    summary = classifier_summary(probabilities, y, tiers, bootstrap=50)
    assert summary["auc"] == pytest.approx(roc_auc_score(y, probabilities))
    fpr = summary["thresholds"]["fpr=0.001"]
    assert fpr["n_negatives"] == int((~y).sum()) and fpr["resolvable"]
    a = summary["thresholds"]["p>=0.5"]["tiers"]["A"]
    assert (
        a["n"] == int((y & (tiers == 0)).sum()) and a["jeffreys_68"][0] <= a["recall"] <= a["jeffreys_68"][1]
    )
    low, high = summary["bootstrap"]["auc_95"]
    assert low <= summary["auc"] <= high


def test_newcombe_paired_interval_by_hand_and_published() -> None:
    """Newcombe (1998) method 10 for paired proportions, on the worked example Fagerland,
    Lydersen & Laake give for it (Cavo et al. 2012, complete response before and after
    consolidation: 59 both, 6 before only, 16 after only, 80 neither): estimate -0.0621,
    95% CI -0.1186 to -0.0046. Here "B" is before (59 + 6), "A" after (59 + 16)."""
    from lenscal.stats.intervals import newcombe_paired_difference

    both, only_b, only_a, neither = 59, 6, 16, 80
    n = both + only_a + only_b + neither
    z = norm.ppf(0.975)

    def wilson_limits(k: int) -> tuple[float, float]:  # the score interval, written out
        p = k / n
        centre = (2 * k + z**2) / (2 * (n + z**2))
        half = z * np.sqrt(z**2 + 4 * k * (1 - p)) / (2 * (n + z**2))
        return centre - half, centre + half

    p_b, p_a = (both + only_b) / n, (both + only_a) / n
    (l_b, u_b), (l_a, u_a) = wilson_limits(both + only_b), wilson_limits(both + only_a)
    a = both * neither - only_a * only_b  # 4624 > n/2: corrected to 4624 - 80.5
    phi = (a - n / 2) / np.sqrt((both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither))
    low = (p_b - p_a) - np.sqrt((p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2)
    high = (p_b - p_a) + np.sqrt((p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2)
    d, lo, hi = newcombe_paired_difference(both, only_a, only_b, neither)
    assert (float(d), float(lo), float(hi)) == pytest.approx((p_b - p_a, low, high), abs=1e-12)
    assert (round(float(d), 4), round(float(lo), 4), round(float(hi), 4)) == (-0.0621, -0.1186, -0.0046)
    # phi's correction: 0 <= ad - bc <= n/2 counts as no correlation; negative stays as is
    d0, lo0, hi0 = newcombe_paired_difference(1, 2, 3, 4)  # ad - bc = -2 < 0
    assert float(lo0) < float(d0) < float(hi0)
    # swapping A and B mirrors the interval; no pairs gives NaN
    d1, lo1, hi1 = newcombe_paired_difference(both, only_b, only_a, neither)
    assert (float(d1), float(lo1), float(hi1)) == pytest.approx((-float(d), -float(hi), -float(lo)))
    assert np.isnan(newcombe_paired_difference(0, 0, 0, 0)[0])


def test_fpr_threshold_recounts_at_the_stored_precision() -> None:
    """float32 scores (as a scorer stores them): the threshold is float32-representable, so
    counting p >= t over the stored float32 values (numpy compares a Python float with a
    float32 array in float32) gives the achieved FPR exactly."""
    import pandas as pd

    from lenscal.stats.metrics import threshold_at_fpr

    rng = np.random.default_rng(3)
    stored = pd.Series(rng.uniform(0.5, 0.52, 20_000).astype(np.float32))
    for target in (1e-3, 1e-4, 0.05):
        found = threshold_at_fpr(stored.to_numpy(), np.zeros(len(stored), bool), target)
        count = int((stored >= found.threshold).sum())
        assert count / len(stored) == found.achieved_fpr and count <= target * len(stored)
        assert np.float32(found.threshold) == found.threshold  # representable: no rounding on compare
        assert int((stored.to_numpy(np.float64) >= found.threshold).sum()) == count


def test_bce_with_logits_matches_torch_and_survives_large_logits() -> None:
    import torch
    import torch.nn.functional as F

    from lenscal.stats.metrics import bce_with_logits

    rng = np.random.default_rng(3)
    logits = np.concatenate([rng.normal(0, 4, 500), [80.0, -80.0, 0.0]])
    labels = np.concatenate([rng.integers(0, 2, 500), [0, 1, 1]]).astype(float)
    expected = F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(labels)).item()
    assert bce_with_logits(logits, labels) == pytest.approx(expected, rel=1e-12)
    assert bce_with_logits(np.array([0.0]), np.array([1.0])) == pytest.approx(np.log(2.0))
    with pytest.raises(ValueError, match="same non-empty shape"):
        bce_with_logits(np.zeros(3), np.zeros(2))
