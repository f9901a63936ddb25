"""Paper IV's ensemble: fit a stacked meta-learner (``lenscal.scoring.meta``) on the
validation split's scores of two (or more) finders, report it on the test split with the
E04-eval metrics, and say where it beats a finder alone and where it does not.

"Beats" is a guarded claim: the paired bootstrap of the test AUC difference (meta minus
finder, the same resampled rows for both) must have its 95% interval above zero. A member
that adds nothing (say, a noisy copy of the other) leaves the interval straddling zero, and
the report says so instead of crowning the ensemble."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.data.manifest import tier_codes
from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_write_text
from lenscal.plotting import pyplot, save_figure
from lenscal.scoring.api import ModelInfo, Scorer, sigmoid
from lenscal.scoring.meta import LOGIT_CLIP, Member, MetaLearner
from lenscal.scoring.rows import score_rows
from lenscal.stats.metrics import roc_auc, roc_curve
from lenscal.stats.summary import classifier_summary


@dataclass
class MetaResult:
    meta: MetaLearner
    out_dir: Path
    metrics: dict[str, Any]


def fit_meta(
    name: str,
    logits: Mapping[str, np.ndarray],
    labels: np.ndarray,
    infos: Sequence[ModelInfo],
    c: float = 1.0,
) -> MetaLearner:
    """Logistic regression (L2, inverse strength ``c``) on the members' standardised clipped
    logits; ``infos`` in member order (their names key ``logits``)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        raise LenscalError("the meta-learner's fitting split needs both lenses and non-lenses")
    members = []
    for info in infos:
        z = np.clip(np.asarray(logits[info.name], np.float64), -LOGIT_CLIP, LOGIT_CLIP)
        std = float(z.std())
        if not std > 0:
            raise LenscalError(f"{info.name}: every fitting score is the same; nothing to learn from")
        members.append(
            Member(info.name, info.model_id, info.weights_sha256, info.spec.to_json(), float(z.mean()), std)
        )
    unfitted = MetaLearner(name, tuple(members), tuple(0.0 for _ in members), 0.0)
    model = LogisticRegression(C=c, max_iter=1000).fit(unfitted.features(logits), y)
    return MetaLearner(
        name, tuple(members), tuple(float(v) for v in model.coef_[0]), float(model.intercept_[0])
    )


def compare(
    meta: MetaLearner,
    logits: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Test AUC of the meta-learner and of each member, and the paired-bootstrap 95% interval
    of each difference; ``beats`` only when the whole interval is above zero."""
    y = np.asarray(labels).astype(bool)
    p_meta = meta.predict_proba(logits)
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, y.size, y.size) for _ in range(bootstrap)]
    samples = [s for s in samples if y[s].any() and not y[s].all()]
    out: dict[str, Any] = {"auc_meta": roc_auc(p_meta, y), "members": {}}
    for m in meta.members:
        z = np.asarray(logits[m.name], np.float64)
        deltas = np.asarray([roc_auc(p_meta[s], y[s]) - roc_auc(z[s], y[s]) for s in samples])
        low, high = (float(v) for v in np.quantile(deltas, [0.025, 0.975]))
        auc = roc_auc(z, y)
        out["members"][m.name] = {
            "auc": auc,
            "delta_auc": out["auc_meta"] - auc,
            "delta_auc_95": [low, high],
            "beats": bool(low > 0),
        }
    return out


def _score_split(
    scorer: Scorer, reader: ShardReader, rows: np.ndarray, names: Sequence[str], label: str
) -> dict[str, np.ndarray]:
    return {n: score_rows(scorer, reader, rows, model=n, label=f"{label} {n}").logits for n in names}


def run_meta(
    scorer: Scorer,
    reader: ShardReader,
    out_dir: str | Path,
    *,
    name: str,
    models: Sequence[str],
    fit_split: str = "val",
    test_split: str = "test",
    bootstrap: int = 1000,
    seed: int = 0,
    c: float = 1.0,
) -> MetaResult:
    """Score ``fit_split`` and ``test_split`` with each of ``models`` (names on ``scorer``),
    fit on the first, report on the second: meta.json, metrics.json (E04-eval metrics of the
    ensemble on test, the members' and the comparison), roc.png."""
    if len(models) < 2:
        raise LenscalError("an ensemble needs at least two models (--model A --model B)")
    table = reader.manifest()
    for column in ("split", "label"):
        if column not in table.columns:
            raise LenscalError(f"{reader.directory}: the manifest has no {column!r} column")
    splits = table["split"].to_numpy()
    fit_rows, test_rows = np.flatnonzero(splits == fit_split), np.flatnonzero(splits == test_split)
    for split, rows in ((fit_split, fit_rows), (test_split, test_rows)):
        if rows.size == 0:
            raise LenscalError(f"{reader.directory}: no rows with split == {split!r}")
    infos = [scorer.model_info(m)[0] for m in models]
    names = [i.name for i in infos]
    labels = table["label"].to_numpy().astype(bool)
    fit_logits = _score_split(scorer, reader, fit_rows, names, fit_split)
    meta = fit_meta(name, fit_logits, labels[fit_rows], infos, c=c)
    test_logits = _score_split(scorer, reader, test_rows, names, test_split)
    y = labels[test_rows]
    tiers = tier_codes(table["tier"] if "tier" in table.columns else None, len(table))[test_rows]
    p_meta = meta.predict_proba(test_logits)
    metrics = classifier_summary(p_meta, y, tiers, bootstrap=bootstrap, seed=seed)
    metrics.update(
        {
            "model": name,
            "features": "each member's logit, clipped to +-20, standardised on the fitting split",
            "stacker": f"logistic regression (L2, C={c:g})",
            "fit_split": fit_split,
            "test_split": test_split,
            "n_fit": int(fit_rows.size),
            "coef": dict(zip(names, meta.coef, strict=True)),
            "intercept": meta.intercept,
            "comparison": compare(meta, test_logits, y, bootstrap=bootstrap, seed=seed),
            "member_metrics": {n: classifier_summary(sigmoid(test_logits[n]), y, tiers) for n in names},
            "shards": str(reader.directory),
        }
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta.save(out / "meta.json")
    _roc_plot({**{n: sigmoid(test_logits[n]) for n in names}, name: p_meta}, y, out / "roc.png")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    return MetaResult(meta, out, metrics)


def _roc_plot(scores: Mapping[str, np.ndarray], y: np.ndarray, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for label, p in scores.items():
        fpr, tpr, _ = roc_curve(p, y)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc(p, y):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate (test)")
    ax.set_ylabel("recall (test)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
