"""`lenscal train`: one training run from a config, resumable after a kill.

Layout of ``train.out_dir``: ``last/`` (bundle + training_state.pt, rewritten every epoch),
``best/`` (best val AUC, exported to ONNX at the end), ``epoch_NNN/`` every
``checkpoint_every`` epochs, ``metrics.jsonl`` (one line per epoch), ``metrics.json``
(the run's summary, read by the registry), ``training_curve.png``.

Learning rate: linear warmup from lr/100 over ``warmup_epochs``, then ``step`` (x gamma
from ``lr_step_epoch`` on), ``cosine`` (to 0 over the remaining epochs) or ``constant``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lenscal.errors import LenscalError
from lenscal.evaluation.summary import classifier_summary
from lenscal.inference import autocast_for, predict, sigmoid_np
from lenscal.models.bundle import export_onnx, load_bundle, read_meta, recover_bundle, save_bundle
from lenscal.models.registry import LensFinder, create_model
from lenscal.preprocess import preprocess
from lenscal.progress import progress_bar
from lenscal.registry.ids import check_id
from lenscal.rng import seed63, training_generator
from lenscal.training.augment import augment
from lenscal.training.config import ConfigError, TrainingConfig
from lenscal.training.data import TrainingData, load_training_data, make_loader

log = logging.getLogger("lenscal.train")
STATE = "training_state.pt"


@dataclass
class TrainResult:
    out_dir: Path
    run_id: str | None
    best_val_auc: float
    best_epoch: int
    epochs_run: int
    device: str


def resolve_device(requested: str) -> torch.device:
    if requested.startswith("cuda") and not torch.cuda.is_available():
        log.warning("train.device=%s but no CUDA device is available: training on the CPU", requested)
        return torch.device("cpu")
    return torch.device(requested)


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
    seed = t.seed if t.seed is not None else config.dataset.seed
    device = resolve_device(t.device)
    out = Path(t.out_dir)
    run_id = run_id or t.run_id or (Path(config_path).stem if config_path else None)
    if registry is not None:
        if run_id is None:
            raise ConfigError(
                "train.run_id: a run recorded in the registry needs an ID (or pass --no-registry)"
            )
        check_id("training", run_id)
    if restart and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_training_data(config, progress=progress)
    spec = config.dataset.preprocess_spec()
    arch_kwargs = _arch_kwargs(config)
    torch.manual_seed(seed63("lenscal-training", "init", seed))  # initial weights: part of the run
    model = create_model(t.arch, **arch_kwargs, pretrained=t.pretrained and not _resumable(out, config))
    parent = _initialise(model, config, registry)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    state = _resume(out, config, model, optimizer, device)
    if registry is not None and run_id is not None:
        _registry_start(registry, run_id, config, parent)
    try:
        result = _run(
            config, data, model, optimizer, state, spec, device, out, seed, run_id, arch_kwargs, progress
        )
    except BaseException as exc:
        if registry is not None:
            registry.set_status(run_id, "Failed")
            registry.update(run_id, notes=f"failed: {type(exc).__name__}: {exc}"[:500])
        raise
    if registry is not None:
        artifacts = [out / "best" / f for f in ("model.safetensors", "model.json", "model.onnx")]
        artifacts += [out / "metrics.jsonl", out / "training_curve.png"]
        registry.record_results(run_id, out, artifacts=[a for a in artifacts if a.exists()])
        registry.set_status(run_id, "Trained")
    return result


def _arch_kwargs(config: TrainingConfig) -> dict[str, Any]:
    return {"base_ch": config.train.base_ch} if config.train.arch == "bottlenecked_resnet" else {}


def _resumable(out: Path, config: TrainingConfig) -> bool:
    return (out / "last" / STATE).is_file()


def _initialise(model: LensFinder, config: TrainingConfig, registry: Any) -> str | None:
    """Load init_weights (a bundle dir or weights file) or init_from (a registry ID)."""
    t = config.train
    source: Path | None = None
    parent = None
    if t.init_from:
        if registry is None:
            raise ConfigError("train.init_from names a registry ID; run with the registry enabled")
        record = registry.get(t.init_from)
        parent = record.id
        bundles = [
            Path(a["path"]).parent for a in record.artifacts if a["path"].endswith("model.safetensors")
        ]
        if not bundles and record.results_path:
            bundles = [Path(record.results_path) / "best"]
        if not bundles:
            raise ConfigError(f"train.init_from: registry record {record.id} has no checkpoint bundle")
        source = bundles[0]
    elif t.init_weights:
        source = Path(t.init_weights)
    if source is None:
        return parent
    if not source.exists():
        raise ConfigError(f"train.init_weights/init_from: {source} does not exist (use --data-root or --set)")
    if source.is_dir():
        loaded = load_bundle(source)
        if loaded.arch != t.arch:
            raise ConfigError(f"train.init_weights: bundle is {loaded.arch}, config trains {t.arch}")
        model.load_state_dict(loaded.model.state_dict())
    else:
        weights: Any
        if source.suffix == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(source))
        else:
            weights = torch.load(source, map_location="cpu", weights_only=True)  # never unpickles code
            if isinstance(weights, dict):  # the team's checkpoints nest the state dict
                weights = weights.get("model_state_dict", weights.get("state_dict", weights))
        model.load_state_dict(weights)
    return parent


def _resume(
    out: Path,
    config: TrainingConfig,
    model: LensFinder,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> dict[str, Any]:
    fresh = {"epoch": 0, "best_auc": -1.0, "best_epoch": -1, "stale_epochs": 0}
    recover_bundle(out / "last")
    recover_bundle(out / "best")
    path = out / "last" / STATE
    if not path.is_file():
        return fresh
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config_sha256"] != config.sha256():
        raise LenscalError(
            f"{out} holds a run of a different config; choose another train.out_dir or pass --restart"
        )
    bundle = load_bundle(out / "last", device=device)
    model.load_state_dict(bundle.model.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming %s at epoch %d", out, int(state["epoch"]))
    return {k: state[k] for k in fresh}


def _run(
    config: TrainingConfig,
    data: TrainingData,
    model: LensFinder,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    spec: Any,
    device: torch.device,
    out: Path,
    seed: int,
    run_id: str | None,
    arch_kwargs: dict[str, Any],
    progress: bool | None,
) -> TrainResult:
    t = config.train
    pin = device.type == "cuda"
    loader, sampler = make_loader(
        data.reader,
        data.train,
        t.batch_size,
        seed=seed,
        shuffle=True,
        workers=t.num_workers,
        pin=pin,
        max_batches=t.max_steps_per_epoch,
    )
    val_loader, _ = make_loader(
        data.reader,
        data.val,
        max(t.batch_size, 256),
        seed=seed,
        shuffle=False,
        workers=min(t.num_workers, 2),
        pin=pin,
    )
    history = _read_history(out, int(state["epoch"]))
    # torch.compile fuses the forward/backward graph (worth it on a GPU); weights stay shared.
    forward = torch.compile(model) if t.compile else model
    accumulate = t.accumulation_steps
    provenance = {
        "config_sha256": config.sha256(),
        "manifest_sha256": data.manifest_sha256,
        "device": str(device),
    }
    for epoch in range(int(state["epoch"]), t.epochs):
        torch.manual_seed(seed63("lenscal-training", "dropout", seed, epoch))  # same draws when resumed
        sampler.set_epoch(epoch)
        model.train()
        for p in model.backbone_parameters():
            p.requires_grad_(epoch >= t.freeze_backbone_epochs)
        steps = len(sampler)
        losses = []
        optimizer.zero_grad(set_to_none=True)
        with progress_bar(steps, f"epoch {epoch + 1}/{t.epochs}", enabled=progress) as advance:
            for step, batch in enumerate(loader):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, epoch, step / steps)
                x = preprocess(batch["images"].to(device, non_blocking=True).float(), spec)
                x = augment(x, config.augment, training_generator(seed, "augment", epoch, step))
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                labels = batch["labels"].to(device)
                weights = batch["weights"].to(device)
                with autocast_for(device, t.mixed_precision):
                    logits = forward(x).float()
                loss = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weights).mean()
                (loss / accumulate).backward()
                if (step + 1) % accumulate == 0 or step + 1 == steps:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                advance(1)
        metrics = _validate(model, val_loader, spec, t.mixed_precision)
        metrics.update(
            {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": lr_at(config, epoch, 0.999)}
        )
        history.append(metrics)
        improved = metrics["auc"] > state["best_auc"]
        if improved:
            state.update(best_auc=metrics["auc"], best_epoch=epoch + 1, stale_epochs=0)
        else:
            state["stale_epochs"] += 1
        state["epoch"] = epoch + 1
        _write_history(out, history)
        common = {
            "arch": t.arch,
            "arch_kwargs": arch_kwargs,
            "spec": spec,
            "config": config.snapshot(),
            "provenance": provenance,
            "run_id": run_id,
        }
        if improved:
            save_bundle(out / "best", model, metrics=_brief(metrics), **common)
        if (epoch + 1) % t.checkpoint_every == 0:
            save_bundle(out / f"epoch_{epoch + 1:03d}", model, metrics=_brief(metrics), **common)
        buffer = io.BytesIO()
        torch.save({**state, "optimizer": optimizer.state_dict(), "config_sha256": config.sha256()}, buffer)
        save_bundle(
            out / "last", model, metrics=_brief(metrics), extra_files={STATE: buffer.getvalue()}, **common
        )
        log.info(
            "epoch %d: val auc %.4f pauc %.4f loss %.4f",
            epoch + 1,
            metrics["auc"],
            metrics["pauc"],
            metrics["train_loss"],
        )
        if t.early_stopping_patience and state["stale_epochs"] >= t.early_stopping_patience:
            log.info("early stop: no val AUC gain for %d epochs", t.early_stopping_patience)
            break
    if not (out / "best" / "model.onnx").exists() and (out / "best").exists():
        export_onnx(out / "best")
    best_meta = read_meta(out / "best")
    summary = {
        "run_id": run_id,
        "arch": t.arch,
        "epochs_run": int(state["epoch"]),
        "best_epoch": int(state["best_epoch"]),
        "best_val_auc": float(state["best_auc"]),
        "best": best_meta["metrics"],
        "final": _brief(history[-1]) if history else {},
        "device": str(device),
        "weights_sha256": best_meta["provenance"]["weights_sha256"],
        "config_sha256": config.sha256(),
        "manifest_sha256": data.manifest_sha256,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    _plot(history, out / "training_curve.png")
    return TrainResult(
        out, run_id, float(state["best_auc"]), int(state["best_epoch"]), int(state["epoch"]), str(device)
    )


@torch.no_grad()
def _validate(model: LensFinder, loader: Any, spec: Any, amp: bool) -> dict[str, Any]:
    model.eval()
    logits, labels, tiers = [], [], []
    for batch in loader:
        out, _ = predict(model, batch["images"], spec, amp=amp)
        logits.append(out.cpu().numpy())
        labels.append(batch["labels"].numpy())
        tiers.append(batch["tiers"].numpy())
    summary = classifier_summary(
        sigmoid_np(np.concatenate(logits)), np.concatenate(labels), np.concatenate(tiers)
    )
    return summary


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "epoch",
        "auc",
        "pauc",
        "ece",
        "recall_at_fpr_1e-3",
        "recall_tier_A_at_p0.5",
        "recall_tier_B_at_p0.5",
        "train_loss",
        "lr",
    )
    return {k: metrics.get(k) for k in keys}


def _read_history(out: Path, epochs_done: int) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= epochs_done]  # drop epochs a kill left unsaved


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    from lenscal.fsutil import atomic_write_text

    atomic_write_text(
        out / "metrics.jsonl", "".join(json.dumps(_brief(h) | {"n_val": h.get("n")}) + "\n" for h in history)
    )


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss (BCE)")
    b.plot(epochs, [h["auc"] for h in history], marker="o", label="val AUC")
    b.plot(epochs, [h["pauc"] for h in history], marker="s", label="val pAUC (FPR<=0.01)")
    b.set_xlabel("epoch")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def _registry_start(registry: Any, run_id: str, config: TrainingConfig, parent: str | None) -> None:
    if registry.exists(run_id):
        record = registry.get(run_id)
        if record.status == "Trained":
            raise ConfigError(f"registry: {run_id} is already Trained; give another train.run_id")
        registry.set_status(run_id, "Running")
        registry.update(run_id, config=config.snapshot())
    else:
        parents = [(parent, "init_from")] if parent else []
        registry.add(
            "training",
            run_id,
            status="Running",
            config=config.snapshot(),
            parents=parents,
            description=f"{config.train.arch} trained by lenscal",
        )
