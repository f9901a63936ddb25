"""What a training run keeps between epochs and between processes: the starting weights
(``init_weights`` / ``init_from``), the resumable state in ``last/``, the per-epoch history
in ``metrics.jsonl`` and the bundles it writes."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_write_text
from lenscal.models import LensFinder
from lenscal.models.bundle import load_bundle, recover_bundle, save_bundle
from lenscal.preprocess import PreprocessSpec
from lenscal.training.config import ConfigError, TrainingConfig

log = logging.getLogger("lenscal.train")
STATE = "training_state.pt"
#: Per-epoch metrics kept in metrics.jsonl and in each bundle's model.json.
BRIEF_KEYS = (
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


@dataclass
class Progress:
    """Where a run stands: resumed from ``last/`` or fresh."""

    epoch: int = 0
    best_auc: float = -1.0
    best_epoch: int = -1
    stale_epochs: int = 0


def brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in BRIEF_KEYS}


def resumable(out: Path) -> bool:
    return (out / "last" / STATE).is_file()


def initial_weights_source(config: TrainingConfig, registry: Any) -> tuple[Path | None, str | None]:
    """(bundle dir or weights file to start from, registry parent id) from init_weights or
    init_from."""
    t = config.train
    if t.init_from:
        if registry is None:
            raise ConfigError("train.init_from names a registry ID; run with the registry enabled")
        record = registry.get(t.init_from)
        bundles = [
            Path(a["path"]).parent for a in record.artifacts if a["path"].endswith("model.safetensors")
        ]
        if not bundles and record.results_path:
            bundles = [Path(record.results_path) / "best"]
        if not bundles:
            raise ConfigError(f"train.init_from: registry record {record.id} has no checkpoint bundle")
        return bundles[0], record.id
    return (Path(t.init_weights) if t.init_weights else None), None


def load_initial_weights(model: LensFinder, source: Path, arch: str) -> None:
    """Weights from a bundle directory or a weights file, never unpickling code."""
    if not source.exists():
        raise ConfigError(f"train.init_weights/init_from: {source} does not exist (use --data-root or --set)")
    if source.is_dir():
        loaded = load_bundle(source)
        if loaded.arch != arch:
            raise ConfigError(f"train.init_weights: bundle is {loaded.arch}, config trains {arch}")
        model.load_state_dict(loaded.model.state_dict())
        return
    weights: Any
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        weights = load_file(str(source))
    else:
        weights = torch.load(source, map_location="cpu", weights_only=True)
        if isinstance(weights, dict):  # the team's checkpoints nest the state dict
            weights = weights.get("model_state_dict", weights.get("state_dict", weights))
    model.load_state_dict(weights)


def resume(
    out: Path,
    config: TrainingConfig,
    model: LensFinder,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> Progress:
    """Load ``last/`` (weights, optimizer, progress) when a previous run of this config left one."""
    recover_bundle(out / "last")
    recover_bundle(out / "best")
    path = out / "last" / STATE
    if not path.is_file():
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config_sha256"] != config.sha256():
        raise LenscalError(
            f"{out} holds a run of a different config; choose another train.out_dir or pass --restart"
        )
    bundle = load_bundle(out / "last", device=device)
    model.load_state_dict(bundle.model.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming %s at epoch %d", out, int(state["epoch"]))
    return Progress(
        int(state["epoch"]), float(state["best_auc"]), int(state["best_epoch"]), int(state["stale_epochs"])
    )


def save_epoch(
    out: Path,
    model: LensFinder,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    metrics: dict[str, Any],
    *,
    improved: bool,
    config: TrainingConfig,
    spec: PreprocessSpec,
    provenance: dict[str, Any],
    run_id: str | None,
) -> None:
    """``best/`` when improved, ``epoch_NNN/`` every checkpoint_every epochs, ``last/`` always
    (with the optimizer and progress, so a kill loses at most this epoch)."""
    common: dict[str, Any] = {
        "arch": config.train.arch,
        "arch_kwargs": config.train.arch_kwargs,
        "spec": spec,
        "config": config.snapshot(),
        "provenance": provenance,
        "run_id": run_id,
        "metrics": brief(metrics),
    }
    epoch = progress.epoch
    if improved:
        save_bundle(out / "best", model, **common)
    if epoch % config.train.checkpoint_every == 0:
        save_bundle(out / f"epoch_{epoch:03d}", model, **common)
    buffer = io.BytesIO()
    state = {**progress.__dict__, "optimizer": optimizer.state_dict(), "config_sha256": config.sha256()}
    torch.save(state, buffer)
    save_bundle(out / "last", model, extra_files={STATE: buffer.getvalue()}, **common)


def read_history(out: Path, epochs_done: int) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= epochs_done]  # drop epochs a kill left unsaved


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(
        out / "metrics.jsonl", "".join(json.dumps(brief(h) | {"n_val": h.get("n")}) + "\n" for h in history)
    )
