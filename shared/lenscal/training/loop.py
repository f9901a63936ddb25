"""`lenscal train`: one training run from a config, resumable after a kill.

Layout of ``train.out_dir``: ``last/`` (bundle + training_state.pt, rewritten every epoch),
``best/`` (best val AUC, exported to ONNX at the end), ``epoch_NNN/`` every
``checkpoint_every`` epochs, ``metrics.jsonl`` (one line per epoch), ``metrics.json``
(the run's summary, read by the registry), ``training_curve.png``.

Learning rate: linear warmup from lr/100 over ``warmup_epochs``, then ``step`` (x gamma
from ``lr_step_epoch`` on), ``cosine`` (to 0 over the remaining epochs) or ``constant``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lenscal.device import resolve_device
from lenscal.errors import LenscalError
from lenscal.mock.catalog import is_mock
from lenscal.models import LensFinder, create_model
from lenscal.models.bundle import ONNX, RAW_ONNX, export_onnx, read_meta
from lenscal.models.predict import autocast_for, predict
from lenscal.plotting import pyplot, save_figure
from lenscal.preprocess import PreprocessSpec, preprocess
from lenscal.progress import progress_bar
from lenscal.registry.ids import check_id
from lenscal.registry.runs import recorded_run
from lenscal.rng import seed63, training_generator
from lenscal.scoring.api import sigmoid
from lenscal.stats.metrics import bce_with_logits
from lenscal.stats.summary import classifier_summary
from lenscal.training.augment import augment
from lenscal.training.config import ConfigError, TrainingConfig
from lenscal.training.data import TrainingData, load_training_data, make_loader
from lenscal.training.state import (
    Progress,
    brief,
    initial_weights_source,
    load_initial_weights,
    read_history,
    resumable,
    resume,
    save_epoch,
    write_history,
)
from lenscal.workspace import clear_directory, run_lock, write_json

log = logging.getLogger("lenscal.train")


@dataclass
class TrainResult:
    out_dir: Path
    run_id: str | None
    best_val_auc: float
    best_epoch: int
    epochs_run: int
    device: str


@dataclass
class Run:
    """Everything one training run works with."""

    config: TrainingConfig
    data: TrainingData
    model: LensFinder
    optimizer: torch.optim.Optimizer
    progress: Progress
    spec: PreprocessSpec
    device: torch.device
    out: Path
    seed: int
    run_id: str | None
    show_progress: bool | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def provenance(self) -> dict[str, Any]:
        return {
            "config_sha256": self.config.sha256(),
            "manifest_sha256": self.data.manifest_sha256,
            "device": str(self.device),
        }


def lr_at(config: TrainingConfig, epoch: int, fraction: float) -> float:
    """Learning rate at ``epoch + fraction`` (fraction in [0, 1))."""
    t = config.train
    if epoch < t.warmup_epochs:
        progress = (epoch + fraction) / t.warmup_epochs
        return t.lr / 100 + (t.lr - t.lr / 100) * progress
    if t.lr_schedule == "step":
        return t.lr * (t.lr_gamma if epoch >= t.lr_step_epoch else 1.0)
    if t.lr_schedule == "cosine":
        span = max(1, t.epochs - t.warmup_epochs)
        return 0.5 * t.lr * (1 + math.cos(math.pi * (epoch - t.warmup_epochs + fraction) / span))
    return t.lr


def train(
    config: TrainingConfig,
    *,
    config_path: str | Path | None = None,
    registry: Any = None,
    run_id: str | None = None,
    restart: bool = False,
    progress: bool | None = None,
) -> TrainResult:
    """Train; ``registry`` is a lenscal Registry to record the run in (None: no record)."""
    t = config.train
    run_id = run_id or t.run_id or (Path(config_path).stem if config_path else None)
    if registry is not None:
        check_training_id(run_id)
    try:
        device = resolve_device(t.device)
    except LenscalError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    seed = t.seed if t.seed is not None else config.dataset.seed
    out = Path(t.out_dir)
    # One run per out_dir (lenscal.workspace): a second training into it is refused at once,
    # naming the first; --restart clears it but keeps the lock.
    with run_lock(out, f"training run ({run_id or t.arch})"):
        if restart:
            clear_directory(out)
        return _train_in(out, config, registry, run_id, device, seed, progress)


def _train_in(
    out: Path,
    config: TrainingConfig,
    registry: Any,
    run_id: str | None,
    device: torch.device,
    seed: int,
    progress: bool | None,
) -> TrainResult:
    t = config.train
    data = load_training_data(config, progress=progress)
    torch.manual_seed(seed63("lenscal-training", "init", seed))  # initial weights: part of the run
    model = create_model(t.arch, **t.arch_kwargs, pretrained=t.pretrained and not resumable(out))
    source, parent = initial_weights_source(config, registry)
    if source is not None:
        load_initial_weights(model, source, t.arch)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    state = resume(out, config, model, optimizer, device)
    run = Run(
        config,
        data,
        model,
        optimizer,
        state,
        config.dataset.preprocess_spec(),
        device,
        out,
        seed,
        run_id,
        progress,
    )
    with recorded_run(
        registry,
        run_id,
        kind="training",
        results_dir=out,
        config=config.snapshot(),
        parents=[(parent, "init_from")] if parent else [],
        description=f"{t.arch} trained by lenscal",
        done_status="Trained",
        rerun=False,
        artifacts=lambda: [
            *(out / "best" / f for f in ("model.safetensors", "model.json", ONNX, RAW_ONNX, "seal.json")),
            out / "metrics.jsonl",
            out / "training_curve.png",
        ],
    ):
        return fit(run)


def check_training_id(run_id: str | None) -> str:
    """The run's registry ID, checked before any work starts."""
    if run_id is None:
        raise ConfigError("train.run_id: a run recorded in the registry needs an ID (or pass --no-registry)")
    try:
        return check_id("training", run_id)
    except LenscalError as exc:
        raise ConfigError(
            f"{exc}. Name the run with --run-id (e.g. --run-id gen6) or train.run_id, or pass --no-registry"
        ) from None


def fit(run: Run) -> TrainResult:
    """Epochs from where ``run.progress`` stands to the end (or an early stop), then the
    summary, the curve and the ONNX export of ``best/``."""
    t = run.config.train
    pin = run.device.type == "cuda"
    loader, sampler = make_loader(
        run.data.reader,
        run.data.train,
        t.batch_size,
        seed=run.seed,
        shuffle=True,
        workers=t.num_workers,
        pin=pin,
        max_batches=t.max_steps_per_epoch,
    )
    val_loader, _ = make_loader(
        run.data.reader,
        run.data.val,
        max(t.batch_size, 256),
        seed=run.seed,
        shuffle=False,
        workers=min(t.num_workers, 2),
        pin=pin,
    )
    run.history = read_history(run.out, run.progress.epoch)
    # torch.compile fuses the forward/backward graph (worth it on a GPU); weights stay shared.
    forward = torch.compile(run.model) if t.compile else run.model
    for epoch in range(run.progress.epoch, t.epochs):
        sampler.set_epoch(epoch)
        losses = _train_epoch(run, epoch, loader, len(sampler), forward)
        metrics = validate(run.model, val_loader, run.spec, t.mixed_precision)
        metrics.update(
            {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": lr_at(run.config, epoch, 0.999)}
        )
        run.history.append(metrics)
        improved = metrics["auc"] > run.progress.best_auc
        if improved:
            run.progress.best_auc, run.progress.best_epoch, run.progress.stale_epochs = (
                metrics["auc"],
                epoch + 1,
                0,
            )
        else:
            run.progress.stale_epochs += 1
        run.progress.epoch = epoch + 1
        write_history(run.out, run.history)
        save_epoch(
            run.out,
            run.model,
            run.optimizer,
            run.progress,
            metrics,
            improved=improved,
            config=run.config,
            spec=run.spec,
            provenance=run.provenance,
            run_id=run.run_id,
        )
        log.info(
            "epoch %d: val auc %.4f pauc %.4f loss %.4f",
            epoch + 1,
            metrics["auc"],
            metrics["pauc"],
            metrics["train_loss"],
        )
        if t.early_stopping_patience and run.progress.stale_epochs >= t.early_stopping_patience:
            log.info("early stop: no val AUC gain for %d epochs", t.early_stopping_patience)
            break
    return _finish(run)


def _train_epoch(run: Run, epoch: int, loader: Any, steps: int, forward: Any) -> list[float]:
    t = run.config.train
    torch.manual_seed(seed63("lenscal-training", "dropout", run.seed, epoch))  # same draws when resumed
    run.model.train()
    for p in run.model.backbone_parameters():
        p.requires_grad_(epoch >= t.freeze_backbone_epochs)
    accumulate = t.accumulation_steps
    losses = []
    run.optimizer.zero_grad(set_to_none=True)
    with progress_bar(steps, f"epoch {epoch + 1}/{t.epochs}", enabled=run.show_progress) as advance:
        for step, batch in enumerate(loader):
            for group in run.optimizer.param_groups:
                group["lr"] = lr_at(run.config, epoch, step / steps)
            x = preprocess(batch["images"].to(run.device, non_blocking=True).float(), run.spec)
            x = augment(x, run.config.augment, training_generator(run.seed, "augment", epoch, step))
            if run.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            labels = batch["labels"].to(run.device)
            weights = batch["weights"].to(run.device)
            with autocast_for(run.device, t.mixed_precision):
                logits = forward(x).float()
            loss = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weights).mean()
            (loss / accumulate).backward()
            if (step + 1) % accumulate == 0 or step + 1 == steps:
                run.optimizer.step()
                run.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            advance(1)
    return losses


@torch.no_grad()
def validate(model: LensFinder, loader: Any, spec: PreprocessSpec, amp: bool) -> dict[str, Any]:
    model.eval()
    logits, labels, tiers = [], [], []
    for batch in loader:
        out, _ = predict(model, batch["images"], spec, amp=amp)
        logits.append(out.cpu().numpy())
        labels.append(batch["labels"].numpy())
        tiers.append(batch["tiers"].numpy())
    all_logits, all_labels = np.concatenate(logits), np.concatenate(labels)
    summary = classifier_summary(sigmoid(all_logits), all_labels, np.concatenate(tiers))
    return {**summary, "val_loss": bce_with_logits(all_logits, all_labels)}


def _finish(run: Run) -> TrainResult:
    out, progress = run.out, run.progress
    graphs = (ONNX, RAW_ONNX)  # both: a torch-free scorer serves the bundle as trained
    if (out / "best").exists() and not all((out / "best" / g).exists() for g in graphs):
        export_onnx(out / "best")
    best_meta = read_meta(out / "best")
    summary = {
        "run_id": run.run_id,
        "arch": run.config.train.arch,
        "epochs_run": progress.epoch,
        "best_epoch": progress.best_epoch,
        "best_val_auc": progress.best_auc,
        "best": best_meta["metrics"],
        "final": brief(run.history[-1]) if run.history else {},
        "device": str(run.device),
        "weights_sha256": best_meta["provenance"]["weights_sha256"],
        "config_sha256": run.config.sha256(),
        "manifest_sha256": run.data.manifest_sha256,
    }
    write_json(out / "metrics.json", summary)
    _plot(run.history, out / "training_curve.png", run.run_id, progress.best_epoch,
          mock=is_mock(run.data.reader.manifest()["galaxy_id"]))  # fmt: skip
    return TrainResult(
        out, run.run_id, progress.best_auc, progress.best_epoch, progress.epoch, str(run.device)
    )


def _plot(history: list[dict[str, Any]], path: Path, run_id: str | None, best_epoch: int, mock: bool) -> None:
    """Train and validation loss, validation AUC and pAUC per epoch; the epoch exported as
    ``best`` (highest validation AUC) marked on both panels."""
    if not history:
        return
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train (augmented)")
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:  # epochs trained before val loss was recorded have none
        a.plot(*zip(*val, strict=True), marker="s", label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("loss (binary cross-entropy, nats)")
    b.plot(epochs, [h["auc"] for h in history], marker="o", label="val AUC")
    b.plot(epochs, [h["pauc"] for h in history], marker="s", label="val pAUC (FPR ≤ 0.01, standardised)")
    b.set_xlabel("epoch")
    b.set_ylabel("area under the ROC curve")
    for ax in (a, b):
        if best_epoch:
            ax.axvline(
                best_epoch, color="#B3261E", ls="--", lw=1.2, label=f"exported as best: epoch {best_epoch}"
            )
        ax.legend()
    fig.suptitle(f"training run {run_id}: loss and validation metrics per epoch")
    fig.tight_layout()
    save_figure(fig, path, mock=mock)
