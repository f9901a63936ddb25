"""Comparing sets of penultimate-layer embeddings: can a linear probe tell them apart (and
is that better than chance, by permutation), and how far apart are they as Gaussians
(Fréchet distance)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b`` (N, D):
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), sample covariances (ddof 1).

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric S_a^(1/2) S_b S_a^(1/2) (same spectrum), which stays real and stable where a
    general matrix square root of S_a S_b picks up imaginary round-off."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding sets must be (N, D) with the same D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each embedding set needs at least two rows")
    mu = x.mean(axis=0) - y.mean(axis=0)
    sa, sb = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    values, vectors = np.linalg.eigh(sa)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ sb @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    return float(max(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * cross, 0.0))


@dataclass
class ProbeResult:
    auc_folds: np.ndarray  # one cross-validated ROC AUC per fold
    permutation_aucs: np.ndarray  # mean CV AUC with the labels shuffled, per permutation
    p_value: float  # (1 + #permutations scoring >= the real one) / (1 + #permutations)
    out_of_fold: np.ndarray  # each row's probability of the positive set, from the fold that held it out
    labels: np.ndarray

    @property
    def auc(self) -> float:
        return float(self.auc_folds.mean())


def linear_probe(
    positives: np.ndarray, negatives: np.ndarray, *, folds: int = 5, permutations: int = 100, seed: int = 42
) -> ProbeResult:
    """Logistic regression (standardised features, L2, C = 1) separating ``positives`` from
    ``negatives``: stratified ``folds``-fold cross-validated ROC AUC, and a permutation test
    (the same CV on shuffled labels) for whether it beats chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, permutation_test_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([positives, negatives]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives), dtype=int), np.zeros(len(negatives), dtype=int)])
    if min(len(positives), len(negatives)) < folds:
        sizes = f"{len(positives)} and {len(negatives)}"
        raise ValueError(f"a {folds}-fold probe needs at least {folds} rows per set, got {sizes}")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    score, permuted, p_value = permutation_test_score(
        model, x, y, cv=cv, scoring="roc_auc", n_permutations=permutations, random_state=seed
    )
    per_fold = np.array(
        [
            roc_auc_score(y[test], model.fit(x[train], y[train]).predict_proba(x[test])[:, 1])
            for train, test in cv.split(x, y)
        ]
    )
    out_of_fold = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    assert np.isclose(per_fold.mean(), score)  # the same folds as the permutation test
    return ProbeResult(per_fold, np.asarray(permuted), float(p_value), out_of_fold, y)
