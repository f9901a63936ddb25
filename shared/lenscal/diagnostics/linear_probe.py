"""Linear probe (D05 step 9): can a logistic regression on the finder's embeddings tell real
Tier-A lenses from bright low-beta_frac injections? 5-fold cross-validated ROC AUC, and a
permutation test against chance. AUC near 1 means the finder encodes an "injection-ness"
direction: injections do not look like real lenses to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.diagnostics.feature_sets import load_sets, needed
from lenscal.plotting import pyplot, save_figure
from lenscal.stats.embeddings import linear_probe
from lenscal.stats.metrics import roc_curve


class LinearProbeParams(CheckParams):
    embeddings: str = "feature_sets"  # the step whose embedding sets to use
    positive: str = "tier_a"
    negative: str = "inj_low_bf"
    folds: int = 5
    permutations: int = 100
    seed: int = 42


@register_check("linear_probe", LinearProbeParams)
def probe_check(ctx: Context, params: LinearProbeParams, out: Path) -> Outcome:
    """Linear probe: CV AUC of real lenses vs injections on embeddings, with a permutation test."""
    sets = load_sets(ctx.step_dir(params.embeddings, wanted_by="linear_probe"))
    a, b = needed(sets, params.positive, "linear_probe"), needed(sets, params.negative, "linear_probe")
    result = linear_probe(a, b, folds=params.folds, permutations=params.permutations, seed=params.seed)
    folds = pd.DataFrame({"fold": range(1, len(result.auc_folds) + 1), "auc": result.auc_folds})
    folds.to_csv(out / "folds.csv", index=False)
    pd.DataFrame({"label": result.labels, "out_of_fold_probability": result.out_of_fold}).to_csv(
        out / "out_of_fold.csv", index=False
    )
    metrics = {
        "positive": params.positive,
        "negative": params.negative,
        "n_positive": len(a),
        "n_negative": len(b),
        "cv_auc_mean": result.auc,
        "cv_auc_std": float(result.auc_folds.std(ddof=1)),
        "permutation_p_value": result.p_value,
        "permutations": params.permutations,
        "permutation_auc_mean": float(result.permutation_aucs.mean()),
    }
    headline = [
        f"{params.positive} vs {params.negative}: {params.folds}-fold CV AUC {result.auc:.3f} +- "
        f"{metrics['cv_auc_std']:.3f} ({len(a)} vs {len(b)}); permutation p = {result.p_value:.3g} "
        f"({params.permutations} shuffles, mean shuffled AUC {metrics['permutation_auc_mean']:.3f})"
    ]
    return Outcome(
        metrics, headline, folds, [_roc(result.out_of_fold, result.labels, result.auc, params, out)]
    )


def _roc(p: np.ndarray, y: np.ndarray, auc: float, params: LinearProbeParams, out: Path) -> Path:
    plt = pyplot()
    fpr, tpr, _ = roc_curve(p, y.astype(bool))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"out-of-fold, mean fold AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel(f"false-positive rate ({params.negative} called {params.positive})")
    ax.set_ylabel(f"true-positive rate ({params.positive})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, out / "probe_roc.png")
