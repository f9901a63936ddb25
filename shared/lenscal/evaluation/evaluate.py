"""`lenscal evaluate`: score a manifest split with a checkpoint bundle and write metrics.json
(E04-eval shape), scores.parquet, roc.png and reliability.png."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lenscal.data.ingest import shards_for_manifest
from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.evaluation.summary import classifier_summary
from lenscal.fsutil import atomic_write_text
from lenscal.inference import predict, sigmoid_np
from lenscal.models.bundle import load_bundle
from lenscal.progress import progress_bar
from lenscal.stats.metrics import reliability_curve, roc_curve
from lenscal.training.data import TIERS


@dataclass
class EvaluationResult:
    out_dir: Path
    metrics: dict[str, Any]


def open_shards(manifest: str | Path, shards: str | Path | None, progress: bool | None) -> ShardReader:
    """A reader over ``shards``, or over the shards of ``manifest`` (packed on first use)."""
    return ShardReader(shards if shards is not None else shards_for_manifest(manifest, progress=progress))


def evaluate(
    model_dir: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    split: str = "val",
    shards: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    bootstrap: int = 1000,
    seed: int = 0,
    label_col: str = "label",
    progress: bool | None = None,
) -> EvaluationResult:
    bundle = load_bundle(model_dir, device=device if device != "cuda" or torch.cuda.is_available() else "cpu")
    reader = open_shards(manifest, shards, progress)
    table = reader.manifest()
    if "split" not in table.columns or label_col not in table.columns:
        raise LenscalError(f"{manifest}: evaluation needs columns 'split' and {label_col!r}")
    rows = np.flatnonzero(table["split"].to_numpy() == split)
    if rows.size == 0:
        raise LenscalError(f"{manifest}: no rows with split == {split!r}")
    logits = np.empty(rows.size, dtype=np.float32)
    with progress_bar(rows.size, f"evaluate {split}", enabled=progress) as advance:
        for start in range(0, rows.size, batch_size):
            chunk = rows[start : start + batch_size]
            batch_logits, _ = predict(
                bundle.model, torch.from_numpy(reader.read(chunk, dtype=None)), bundle.spec
            )
            logits[start : start + chunk.size] = batch_logits.cpu().numpy()
            advance(chunk.size)
    probabilities = sigmoid_np(logits)
    labels = table[label_col].to_numpy()[rows].astype(bool)
    tiers = (
        table["tier"].map({t: i for i, t in enumerate(TIERS)}).fillna(-1).to_numpy()[rows]
        if ("tier" in table.columns)
        else None
    )
    metrics = classifier_summary(probabilities, labels, tiers, bootstrap=bootstrap, seed=seed)
    metrics.update(
        {
            "model": str(bundle.path),
            "model_id": bundle.model_id,
            "weights_sha256": bundle.meta["provenance"]["weights_sha256"],
            "preprocess": bundle.meta["preprocess"],
            "split": split,
            "manifest": str(manifest),
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(out / "roc.png", dpi=90, metadata={"Software": None})
    plt.close(fig)
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
    fig.savefig(out / "reliability.png", dpi=90, metadata={"Software": None})
    plt.close(fig)
