"""Training end to end on a small mock survey: learning, bundles, registry, resume, guards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from lenscal.mock import make_mock_survey
from lenscal.models.bundle import BundleError, export_onnx, load_bundle
from lenscal.registry.store import Registry
from lenscal.training.config import ConfigError, config_from_dict
from lenscal.training.loop import train

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("survey")
    make_mock_survey(out, n=260, seed=21, positive_fraction=0.35, progress=False)
    return out / "manifest.parquet"


def tiny_config(manifest: Path, out_dir: Path, **train: object) -> dict[str, object]:
    return {
        "dataset": {"manifest_path": str(manifest), "seed": 3},
        "augment": {"hflip": True, "vflip": True, "rot90": True},
        "train": {
            "arch": "bottlenecked_resnet", "base_ch": 8, "epochs": 4, "batch_size": 32, "effective_batch": 64,
            "lr": 3e-3, "lr_schedule": "cosine", "warmup_epochs": 1, "num_workers": 0, "device": "cpu",
            "out_dir": str(out_dir), "checkpoint_every": 2, "mixed_precision": False, **train,
        },
    }  # fmt: skip


def test_tiny_run_learns_writes_bundle_and_records(survey: Path, tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    config = config_from_dict(tiny_config(survey, tmp_path / "run", epochs=6))
    result = train(config, registry=registry, run_id="gen97")
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 6 and result.best_val_auc > 0.7 and result.best_val_auc > history[0]["auc"] + 0.1
    best = tmp_path / "run" / "best"
    assert {p.name for p in best.iterdir()} == {
        "model.safetensors",
        "model.json",
        "model.onnx",
        "model.raw.onnx",
        "seal.json",
    }
    bundle = load_bundle(best)
    assert bundle.spec == config.dataset.preprocess_spec()
    # The config leaves `crop` unset: the team's loader default, a central 64 px crop, which
    # travels in the spec (scoring crops the same way: the evaluation below matches training).
    assert bundle.spec.crop_size == 64 and bundle.meta["input_shape"] == [3, 64, 64]
    meta = bundle.meta
    assert (
        meta["provenance"]["config_sha256"] == config.sha256()
        and len(meta["provenance"]["manifest_sha256"]) == 64
    )
    assert (tmp_path / "run" / "epoch_002").is_dir() and (tmp_path / "run" / "training_curve.png").is_file()
    record = registry.get("gen97")
    assert record.status == "Trained" and record.config_sha256 is not None
    assert record.metrics["best_val_auc"] == pytest.approx(result.best_val_auc)
    assert record.metric_sources["best_val_auc"].endswith("metrics.json")
    assert any(a["path"].endswith("best/model.safetensors") for a in record.artifacts)
    assert registry.verify() == []
    # `lenscal evaluate` on the val split: E04-eval-shaped metrics.json, recorded in the registry.
    run = subprocess.run(
        [sys.executable, "-m", "lenscal.cli", "evaluate", "--model", str(best), "--manifest", str(survey),
         "--out", str(tmp_path / "eval"), "--bootstrap", "100", "--run-id", "E97-eval",
         "--registry-url", f"sqlite:///{tmp_path / 'r.sqlite'}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["auc"] == pytest.approx(result.best_val_auc, abs=1e-6)  # same split, same weights
    assert {"pauc", "ece", "recall_at_fpr_1e-3", "recall_tier_A_at_p0.5", "bootstrap", "thresholds"} <= set(
        metrics
    )
    assert {p.name for p in (tmp_path / "eval").iterdir()} >= {"roc.png", "reliability.png", "scores.parquet"}
    evaluation = registry.get("E97-eval")
    assert evaluation.status == "Complete" and evaluation.parents == [{"id": "gen97", "role": "checkpoint"}]
    assert evaluation.metrics["auc"] == pytest.approx(metrics["auc"])
    # The weights file is hash-checked: a tampered bundle is refused.
    weights = best / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="refusing tampered weights"):
        load_bundle(best)


def test_resume_after_kill_matches_uninterrupted(survey: Path, tmp_path: Path) -> None:
    # Both runs in child processes of the same environment: CPU float sums depend on the
    # thread count, which this process may have fixed differently (Dask sets OMP_NUM_THREADS).
    def command_for(name: str) -> list[str]:
        config_file = tmp_path / f"{name}.yaml"
        config_file.write_text(yaml.safe_dump(tiny_config(survey, tmp_path / name, epochs=4)))
        return [sys.executable, "-m", "lenscal.cli", "train", "--config", str(config_file), "--no-registry"]

    straight = subprocess.run(command_for("straight"), capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    command = command_for("killed")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(history.read_text().splitlines()) < 4, "the kill should land before the last epoch"
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(history.read_text().splitlines()) == 4


def test_weighted_loss_with_equal_weights_is_refused_unless_forced(survey: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config(survey, tmp_path / "w", epochs=1, unweighted_loss=False))
    with pytest.raises(ConfigError, match="every 'sample_weight' is 1: the weighted loss would equal"):
        train(config)
    forced = config_from_dict(
        tiny_config(survey, tmp_path / "w", epochs=1, unweighted_loss=False, force_weighted_loss=True)
    )
    assert train(forced).epochs_run == 1


def test_shortcut_experiment_modes_run(survey: Path, tmp_path: Path) -> None:
    manifest = pd.read_parquet(survey)
    root = survey.parent
    positives = manifest[manifest.label == 1].reset_index(drop=True)
    negatives = manifest[manifest.label == 0].reset_index(drop=True)
    paired = positives.copy()
    paired["cutout_path"] = [str(root / p) for p in positives.cutout_path]
    paired["host_cutout_path"] = [str(root / p) for p in negatives.cutout_path[: len(positives)]]
    paired_path = tmp_path / "paired.parquet"
    paired.to_parquet(paired_path, index=False)
    raw = tiny_config(paired_path, tmp_path / "paired", epochs=1)
    raw["dataset"] = {
        "manifest_path": str(paired_path),
        "mode": "paired",
        "preprocessing": "residual_radial_profile",
    }
    raw["augment"] = {
        "core_dropout_prob": 0.5,
        "core_radius": 5.0,
        "az_shuffle_prob": 0.3,
        "az_shuffle_rmax": 32,
    }
    result = train(config_from_dict(raw))
    assert result.epochs_run == 1 and np.isfinite(result.best_val_auc)
    assert load_bundle(tmp_path / "paired" / "best").spec.kind == "residual_radial_profile"


def test_onnx_export_parity_for_efficientnet(tmp_path: Path) -> None:
    from lenscal.models import create_model
    from lenscal.models.bundle import save_bundle
    from lenscal.preprocess import PreprocessSpec

    model = create_model("efficientnet_v2_s")
    bundle = save_bundle(
        tmp_path / "b", model, arch="efficientnet_v2_s", arch_kwargs={}, spec=PreprocessSpec()
    )
    assert export_onnx(bundle).stat().st_size > 1_000_000
