"""`lenscal evaluate`: score a manifest split through a Scorer and write metrics.json
(E04-eval shape), scores.parquet, roc.png and reliability.png."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.data.manifest import tier_codes
from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_write_text
from lenscal.plotting import pyplot, save_figure
from lenscal.scoring.api import Scorer, sigmoid
from lenscal.scoring.rows import score_rows
from lenscal.stats.metrics import reliability_curve, roc_curve
from lenscal.stats.summary import classifier_summary


@dataclass
class EvaluationResult:
    out_dir: Path
    metrics: dict[str, Any]


def evaluate(
    scorer: Scorer,
    reader: ShardReader,
    out_dir: str | Path,
    *,
    model: str = "",
    split: str = "val",
    chunk: int = 4096,
    bootstrap: int = 1000,
    seed: int = 0,
    label_col: str = "label",
    progress: bool | None = None,
) -> EvaluationResult:
    """Score the ``split`` rows of ``reader`` with ``scorer`` (its ``model``, default if
    empty) and summarise them with lenscal.stats.summary."""
    table = reader.manifest()
    if "split" not in table.columns or label_col not in table.columns:
        raise LenscalError(f"{reader.directory}: evaluation needs manifest columns 'split' and {label_col!r}")
    rows = np.flatnonzero(table["split"].to_numpy() == split)
    if rows.size == 0:
        raise LenscalError(f"{reader.directory}: no rows with split == {split!r}")
    info = scorer.model_info(model)[0]
    scored = score_rows(
        scorer, reader, rows, model=info.name, read_rows=chunk, label=f"evaluate {split}", progress=progress
    )
    logits = scored.logits.astype(np.float32)
    probabilities = sigmoid(logits)
    labels = table[label_col].to_numpy()[rows].astype(bool)
    tiers = tier_codes(table["tier"] if "tier" in table.columns else None, len(table))[rows]
    metrics = classifier_summary(probabilities, labels, tiers, bootstrap=bootstrap, seed=seed)
    metrics.update(
        {
            "model": info.name,
            "model_id": info.model_id,
            "weights_sha256": info.weights_sha256,
            "bundle_sha256": info.bundle_sha256,
            "preprocess": json.loads(info.spec.to_json()),
            "split": split,
            "shards": str(reader.directory),
        }
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = table.iloc[rows][["galaxy_id"]].copy()
    scores["label"] = labels.astype(int)
    scores["logit"] = logits
    scores["probability"] = probabilities
    scores.to_parquet(out / "scores.parquet", index=False)
    _plots(probabilities, labels, metrics, out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    return EvaluationResult(out, metrics)


def _plots(p: np.ndarray, y: np.ndarray, metrics: dict[str, Any], out: Path) -> None:
    plt = pyplot()
    fpr, tpr, _ = roc_curve(p, y)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUC {metrics['auc']:.4f}")
    ax.set_xscale("log")
    ax.set_xlim(max(1.0 / max(int((~y).sum()), 1), 1e-5), 1)
    ax.set_xlabel("false positive rate (log)")
    ax.set_ylabel("recall")
    ax.axvline(0.01, color="grey", ls=":", lw=1, label="pAUC limit (FPR 0.01)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, out / "roc.png")
    curve = reliability_curve(p, y)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.plot(
        curve["mean_predicted"], curve["fraction_positive"], marker="o", label=f"ECE {metrics['ece']:.4f}"
    )
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction of lenses")
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, out / "reliability.png")
