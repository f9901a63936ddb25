"""Team checkpoints import as the team's dhs/train.py saved them, in both of its formats:
``{"model", "opt", "sched", "best_auc", "dataset": DatasetConfig.__dict__, "train":
TrainConfig.__dict__}`` (before 2026-02-13; ``dataset.mode`` is the *data* mode) and the same
plus ``"preprocess_spec": PreprocessSpec.to_dict()`` (from 2026-02-13; its ``mode`` is the
normalisation kind). The reference is the team's own preprocessing written out here in numpy
and torchvision's network, never lenscal's code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lenscal.errors import LenscalError
from lenscal.models.imports import UNCLIPPED, spec_from_checkpoint
from lenscal.scoring.local import LocalScorer

from .conftest import LENSCAL


def dataset_config(**changes: object) -> dict[str, object]:
    """DatasetConfig.__dict__ as dhs/data.py of 2026-02-13 builds it (a gen4-style config)."""
    config: dict[str, object] = {
        "parquet_path": "",
        "mode": "file_manifest",
        "preprocessing": "raw_robust",
        "label_col": "label",
        "seed": 1337,
        "manifest_path": "/lambda/nfs/manifests/training_parity_70_30_v1.parquet",
        "cutout_path_col": "cutout_path",
        "sample_weight_col": None,
        "crop": False,
        "crop_size": 0,
        "annulus_r_in": 0.0,
        "annulus_r_out": 0.0,
    }
    config.update(changes)
    return config


def train_config(arch: str) -> dict[str, object]:
    return {
        "arch": arch,
        "epochs": 60,
        "batch_size": 64,
        "lr": 5e-5,
        "out_dir": "/lambda/nfs/checkpoints/gen4",
    }


def preprocess_spec_dict(**changes: object) -> dict[str, object]:
    """dhs/preprocess_spec.py PreprocessSpec.to_dict()."""
    spec: dict[str, object] = {
        "mode": "raw_robust",
        "crop": False,
        "crop_size": 0,
        "clip_range": 10.0,
        "annulus_r_in": None,
        "annulus_r_out": None,
    }
    spec.update(changes)
    return spec


# --- reading the formats (no weights needed) -------------------------------------------


def test_old_format_reads_the_kind_from_preprocessing_not_the_data_mode() -> None:
    for data_mode in ("file_manifest", "paired", "unpaired_manifest"):
        spec = spec_from_checkpoint({"dataset": dataset_config(mode=data_mode)})
        assert spec is not None and spec.kind == "raw_robust"
        assert (spec.annulus_r_in, spec.annulus_r_out) == (20.0, 32.0)  # 0.0 = the default
        assert spec.crop_size is None and spec.clip_range == 10.0
    spec = spec_from_checkpoint({"dataset": dataset_config(preprocessing="residual_radial_profile")})
    assert spec is not None and spec.kind == "residual_radial_profile"


def test_old_format_crops_as_the_loader_of_its_day() -> None:
    # 2026-02-11..13: crop / crop_size keys; crop_size 0 means the team's 64 px.
    assert spec_from_checkpoint({"dataset": dataset_config(crop=True)}).crop_size == 64  # type: ignore[union-attr]
    assert spec_from_checkpoint({"dataset": dataset_config(crop=True, crop_size=72)}).crop_size == 72  # type: ignore[union-attr]
    # 2026-02-10: no crop keys, every cutout cropped to 64 px, clipped at 10.
    before = dataset_config()
    for key in ("crop", "crop_size", "annulus_r_in", "annulus_r_out"):
        before.pop(key)
    spec = spec_from_checkpoint({"dataset": before})
    assert spec is not None and spec.crop_size == 64 and spec.clip_range == 10.0
    # 2026-02-09: no cutout_path_col yet, and preprocess_stack did not clip.
    before.pop("cutout_path_col")
    assert spec_from_checkpoint({"dataset": before}).clip_range == UNCLIPPED  # type: ignore[union-attr]
    # gen5-style annulus in the dataset config.
    gen5 = spec_from_checkpoint({"dataset": dataset_config(annulus_r_in=32.5, annulus_r_out=45.0)})
    assert gen5 is not None and (gen5.annulus_r_in, gen5.annulus_r_out) == (32.5, 45.0)


def test_new_format_reads_preprocess_spec_mode_as_the_kind() -> None:
    checkpoint = {
        "dataset": dataset_config(mode="file_manifest", preprocessing="residual_radial_profile"),
        "preprocess_spec": preprocess_spec_dict(crop=True, crop_size=0, clip_range=20.0),
    }
    spec = spec_from_checkpoint(checkpoint)
    assert spec is not None and spec.kind == "raw_robust"  # the spec wins over the dataset
    assert spec.crop_size == 64 and spec.clip_range == 20.0 and spec.annulus_r_in == 20.0
    spec = spec_from_checkpoint(
        {"preprocess_spec": preprocess_spec_dict(annulus_r_in=32.5, annulus_r_out=45.0)}
    )
    assert spec is not None and (spec.annulus_r_in, spec.annulus_r_out, spec.crop_size) == (32.5, 45.0, None)


def test_unknown_kinds_name_the_key() -> None:
    with pytest.raises(LenscalError, match=r"dataset\.preprocessing is 'file_manifest'"):
        spec_from_checkpoint({"dataset": dataset_config(preprocessing="file_manifest")})
    with pytest.raises(LenscalError, match=r"preprocess_spec\.mode is 'sqrt'"):
        spec_from_checkpoint({"preprocess_spec": preprocess_spec_dict(mode="sqrt")})
    assert spec_from_checkpoint({"model": {}}) is None


# --- end to end: saved as the team saved them, imported without flags, scored ----------


def team_preprocess(cube: np.ndarray, crop: int | None, clip: float) -> np.ndarray:
    """The team's preprocess_stack (dhs/preprocess.py, raw_robust), written out: centre crop,
    NaN -> 0, per band (x - median) / (MAD + 1e-8) over 20 <= r < 32 px from (H//2, W//2),
    clip."""
    if crop is not None and cube.shape[-1] != crop:
        start = (cube.shape[-1] - crop) // 2
        cube = cube[:, start : start + crop, start : start + crop]
    out = []
    h, w = cube.shape[-2:]
    yy, xx = np.ogrid[:h, :w]
    r = np.sqrt((xx - w // 2) ** 2 + (yy - h // 2) ** 2)
    ring = (r >= 20) & (r < 32)
    for band in np.nan_to_num(cube.astype(np.float32), nan=0.0):
        median = float(np.median(band[ring]))
        mad = float(np.median(np.abs(band[ring] - median))) + 1e-8
        out.append(np.clip((band - median) / mad, -clip, clip))
    return np.stack(out).astype(np.float32)


def spread_head(model: nn.Module, inputs: np.ndarray) -> None:
    """Set the logit head along these inputs' embedding spread (logit std ~2): a random
    EfficientNet gives nearly equal scores to every cutout, which would hide a wrong input."""
    model.eval()
    with torch.no_grad():
        embedding = model.avgpool(model.features(torch.from_numpy(inputs))).flatten(1).double()
        centred = embedding - embedding.mean(0)
        direction = centred[int(centred.norm(dim=1).argmax())]
        projection = centred @ direction
        scale = 2.0 / float(projection.std())
        head = model.classifier[1]
        head.weight.copy_((direction * scale).float()[None])
        head.bias.copy_(torch.tensor([-float(embedding.mean(0) @ direction) * scale]))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_both_team_formats_import_without_flags_and_score_as_torchvision(
    tmp_path: Path, real_cutout_paths: list[Path]
) -> None:
    import torchvision

    torch.manual_seed(4)  # random convolutions: a wrongly mapped tensor changes the scores
    team = torchvision.models.efficientnet_v2_s(weights=None)  # the team's build_efficientnet_v2_s
    team.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1))
    cubes = []
    for path in real_cutout_paths:
        with np.load(path) as npz:
            cubes.append(np.transpose(npz["cutout"].astype(np.float32), (2, 0, 1)))
    raw = np.stack(cubes)
    spread_head(team, np.stack([team_preprocess(c, None, 10.0) for c in raw]))
    common = {
        "epoch": 19,
        "model": team.state_dict(),
        "best_auc": 0.9921,
        "train": train_config("efficientnet_v2_s"),
    }
    formats = {
        # dhs/train.py of 2026-02-11/12 (gen1-gen4): DatasetConfig only, crop: false (Paper IV parity).
        "dataset_only": ({**common, "dataset": dataset_config()}, None),
        # dhs/train.py of 2026-02-13 on: preprocess_spec beside the dataset config.
        "preprocess_spec": (
            {**common, "dataset": dataset_config(), "preprocess_spec": preprocess_spec_dict()},
            None,
        ),
        # dhs/train.py of 2026-02-10: no crop keys, the loader cropped to 64 px.
        "before_crop_keys": (
            {
                **common,
                "dataset": {
                    k: v for k, v in dataset_config().items() if not k.startswith(("crop", "annulus"))
                },
            },
            64,
        ),
    }
    for name, (checkpoint, crop) in formats.items():
        saved = tmp_path / f"{name}.pt"
        torch.save(checkpoint, saved)
        run = subprocess.run(
            [*LENSCAL, "models", "import-checkpoint", str(saved), "--out", str(tmp_path / name)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, f"{name}: {run.stderr}"
        with torch.no_grad():
            expected = torch.sigmoid(
                team(torch.from_numpy(np.stack([team_preprocess(c, crop, 10.0) for c in raw]))).squeeze(-1)
            ).numpy()
        got = LocalScorer(tmp_path / name, engine="torch").score(raw).probabilities
        assert np.ptp(expected) > 0.05, "the reference model must separate the cutouts"
        np.testing.assert_allclose(got, expected, atol=2e-3, err_msg=name)
