"""Binomial intervals for k successes in n trials, each labelled by its real name.

- Jeffreys: equal-tailed Bayesian interval of Beta(k + 1/2, n - k + 1/2) (the team's
  "Bayesian" interval; a team summary once mislabelled it Wilson).
- Wilson: score interval.
- Clopper-Pearson: exact (conservative) interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta, norm


@dataclass(frozen=True)
class Interval:
    method: str
    level: float
    k: int
    n: int
    estimate: float
    low: float
    high: float


def _check(k: int, n: int, level: float) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def jeffreys(k: int, n: int, level: float = 0.68) -> Interval:
    _check(k, n, level)
    if n == 0:
        return Interval("jeffreys", level, k, n, float("nan"), 0.0, 1.0)
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k + 0.5, n - k + 0.5))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 0.5, n - k + 0.5))
    return Interval("jeffreys", level, k, n, k / n, low, high)


def wilson(k: int, n: int, level: float = 0.68) -> Interval:
    _check(k, n, level)
    if n == 0:
        return Interval("wilson", level, k, n, float("nan"), 0.0, 1.0)
    z = float(norm.ppf(1 - (1 - level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval("wilson", level, k, n, p, max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson(k: int, n: int, level: float = 0.68) -> Interval:
    _check(k, n, level)
    if n == 0:
        return Interval("clopper_pearson", level, k, n, float("nan"), 0.0, 1.0)
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return Interval("clopper_pearson", level, k, n, k / n, low, high)


def jeffreys_bounds(k: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Jeffreys interval (see ``jeffreys``); rows with n = 0 give (nan, nan)."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    a = (1 - level) / 2
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, beta.ppf(a, k + 0.5, n - k + 0.5), 0.0)
        high = np.where(k < n, beta.ppf(1 - a, k + 0.5, n - k + 0.5), 1.0)
    empty = n == 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def wilson_bounds(k: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson score interval; rows with n = 0 give (nan, nan)."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z = float(norm.ppf(1 - (1 - level) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    empty = n == 0
    return np.where(empty, np.nan, np.maximum(0.0, centre - half)), np.where(
        empty, np.nan, np.minimum(1.0, centre + half)
    )


def newcombe_difference(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p2 - p1, low, high): Newcombe's hybrid score interval for a difference of two
    independent proportions (1998, method 10), built from each one's Wilson interval."""
    a1, m1, a2, m2 = (np.asarray(v, dtype=np.float64) for v in (k1, n1, k2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = a1 / m1, a2 / m2
    l1, u1 = wilson_bounds(a1, m1, level)
    l2, u2 = wilson_bounds(a2, m2, level)
    d = p2 - p1
    return d, d - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def newcombe_paired_difference(
    both: ArrayLike, only_a: ArrayLike, only_b: ArrayLike, neither: ArrayLike, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_b - p_a, low, high) for paired binary outcomes (the same injections detected or
    not under A and under B): Newcombe (1998, Stat. Med. 17:2635), method 10, the hybrid
    score interval for paired data, as Fagerland, Lydersen & Laake give it ("Newcombe
    square-and-add", Statistical Analysis of Contingency Tables, ch. 8). From the Wilson
    limits of p_b = (both + only_b) / n and p_a = (both + only_a) / n, with the phi
    correlation of the 2x2 table, its numerator A = both * neither - only_a * only_b taken
    as A - n/2 when A > n/2, 0 when 0 <= A <= n/2, A when negative, and phi = 0 when a
    margin is empty:

        low  = d - sqrt((p_b - l_b)^2 - 2 phi (p_b - l_b)(u_a - p_a) + (u_a - p_a)^2)
        high = d + sqrt((p_a - l_a)^2 - 2 phi (p_a - l_a)(u_b - p_b) + (u_b - p_b)^2)

    Rows with n = 0 give NaN."""
    e, f, g, h = (np.asarray(v, dtype=np.float64) for v in (both, only_a, only_b, neither))
    n = e + f + g + h
    with np.errstate(invalid="ignore", divide="ignore"):
        p_b, p_a = (e + g) / n, (e + f) / n
        l_b, u_b = wilson_bounds(e + g, n, level)
        l_a, u_a = wilson_bounds(e + f, n, level)
        a = e * h - f * g
        a = np.where(a > n / 2, a - n / 2, np.where(a >= 0, 0.0, a))
        margins = (e + g) * (f + h) * (e + f) * (g + h)
        phi = np.where(margins > 0, a / np.sqrt(np.where(margins > 0, margins, 1.0)), 0.0)
        d = p_b - p_a
        low = d - np.sqrt(
            np.maximum((p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2, 0)
        )
        high = d + np.sqrt(
            np.maximum((p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2, 0)
        )
    empty = n == 0
    nan = np.full(np.shape(d), np.nan)
    return np.where(empty, nan, d), np.where(empty, nan, low), np.where(empty, nan, high)


#: How each interval of a difference is named wherever it is shown.
PAIRED_METHOD = (
    "Newcombe (1998) method 10 for paired proportions (Wilson limits with the phi correlation), 95%"
)
UNPAIRED_METHOD = (
    "Newcombe (1998) method 10 hybrid score interval for independent proportions (Wilson limits), 95%"
)
