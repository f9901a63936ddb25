"""E04-eval as a check: the classifier summary of a split (AUC with bootstrap interval,
standardised pAUC, ECE, recall and FPR per tier at fixed and FPR-set thresholds), through
lenscal.evaluation, which also writes scores.parquet, roc.png and reliability.png."""

from __future__ import annotations

from pathlib import Path

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.evaluation.evaluate import evaluate


class EvaluateParams(CheckParams):
    split: str = "val"
    bootstrap: int = 1000
    seed: int = 0


@register_check("evaluate", EvaluateParams)
def evaluate_check(ctx: Context, params: EvaluateParams, out: Path) -> Outcome:
    """Evaluation: AUC, pAUC, ECE, per-tier recall and FPR with bootstrap and Jeffreys intervals."""
    result = evaluate(
        ctx.scorer,
        ctx.hosts,
        out,
        model=ctx.model,
        split=params.split,
        bootstrap=params.bootstrap,
        seed=params.seed,
        progress=ctx.progress,
    )
    m = result.metrics
    auc = f"AUC {m['auc']:.4f}"
    if "bootstrap" in m:
        low, high = m["bootstrap"]["auc_95"]
        auc += f" (bootstrap 95% [{low:.4f}, {high:.4f}])"
    headline = [
        f"{auc}; standardised pAUC(FPR <= {m['pauc_max_fpr']:g}) {m['pauc']:.4f}; ECE {m['ece']:.4f} "
        f"({m['ece_bins']} {m['ece_binning']} bins); {m['n_positive']} lenses, {m['n_negative']} negatives",
    ]
    for label, entry in m["thresholds"].items():
        if entry.get("recall") is None:
            continue
        tiers = ", ".join(f"tier {t} {v['k']}/{v['n']}" for t, v in entry["tiers"].items())
        fpr = "n/a" if entry["fpr"] is None else f"{entry['fpr']:.2g}"
        headline.append(
            f"{label} (p >= {entry['threshold']:.4g}): recall {entry['k']}/{entry['n']} ({tiers}); FPR {fpr}"
        )
    caption = (
        f"{m['n_positive']} lenses and {m['n_negative']} negatives of split {params.split}; bootstrap "
        f"{params.bootstrap:,} resamples, seed {params.seed}"
    )
    return Outcome(m, headline, None, [out / "roc.png", out / "reliability.png"], caption=caption)
