"""Training configs: the team's YAML schema (sections ``dataset``, ``augment``, ``train``)
is lenscal's native format. Their 17 configs validate unchanged; unknown keys and bad
values are errors that name the key. lenscal's additions are optional keys:
``dataset.shards_dir``, ``dataset.annulus_r_in/out``, ``dataset.clip_range``,
``dataset.tier_col``, ``train.tier_loss_weights``, ``train.init_from`` (a registry ID),
``train.force_weighted_loss``, ``train.checkpoint_every``, ``train.seed``,
``train.max_steps_per_epoch``, ``train.compile``, ``train.run_id``, ``train.model_args``
(constructor arguments of the architecture, checked against its entrypoint).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lenscal.errors import LenscalError
from lenscal.home import FULL, apply_preset, merge_dotted, read_config
from lenscal.preprocess import PREPROCESSORS, TEAM_CROP_SIZE, PreprocessSpec
from lenscal.validation import validated
from lenscal.workspace import canonical_sha256


class ConfigError(LenscalError):
    """A training config is unreadable or breaks the schema; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DatasetConfig(_Section):
    parquet_path: str = ""
    manifest_path: str = ""
    shards_dir: str = ""
    mode: Literal["file_manifest", "paired", "unpaired_manifest"] = "file_manifest"
    preprocessing: str = "raw_robust"
    label_col: str = "label"
    cutout_path_col: str = "cutout_path"
    host_path_col: str = "host_cutout_path"
    sample_weight_col: str = "sample_weight"
    tier_col: str = "tier"
    seed: int = 42
    #: The team's loader cropped to the centre unless a config said ``crop: false``;
    #: crop_size 0 means their default, 64 px. The crop is part of the PreprocessSpec.
    crop: bool = True
    crop_size: int = Field(0, ge=0, le=101)
    annulus_r_in: float | None = Field(None, ge=0)
    annulus_r_out: float | None = Field(None, gt=0)
    clip_range: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _checks(self) -> DatasetConfig:
        if self.preprocessing not in PREPROCESSORS:
            raise ValueError(f"preprocessing {self.preprocessing!r} is not one of {sorted(PREPROCESSORS)}")
        return self

    def preprocess_spec(self) -> PreprocessSpec:
        """The spec the model trains with (and that its checkpoint carries)."""
        return PreprocessSpec().with_overrides(
            kind=self.preprocessing,
            annulus_r_in=self.annulus_r_in,
            annulus_r_out=self.annulus_r_out,
            clip_range=self.clip_range,
            crop_size=(self.crop_size or TEAM_CROP_SIZE) if self.crop else None,
        )


class AugmentConfig(_Section):
    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    core_dropout_prob: float = Field(0.0, ge=0, le=1)
    core_radius: float = Field(5.0, ge=0, description="px")
    az_shuffle_prob: float = Field(0.0, ge=0, le=1)
    az_shuffle_rmax: float = Field(32.0, gt=0, description="px")


class TrainConfig(_Section):
    arch: str = "resnet18"
    #: The team's key for bottlenecked_resnet's width; any architecture argument can be
    #: given in model_args (checked against the architecture's entrypoint).
    base_ch: int | None = Field(None, ge=1)
    model_args: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=1)
    effective_batch: int | None = Field(None, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    lr_schedule: Literal["step", "cosine", "constant"] = "constant"
    lr_step_epoch: int = Field(1_000_000, ge=1)
    lr_gamma: float = Field(0.5, gt=0)
    warmup_epochs: int = Field(0, ge=0)
    freeze_backbone_epochs: int = Field(0, ge=0)
    num_workers: int = Field(4, ge=0)
    device: str = "auto"
    early_stopping_patience: int = Field(0, ge=0)
    out_dir: str = "runs/default"
    mixed_precision: bool = True
    unweighted_loss: bool = True
    force_weighted_loss: bool = False
    tier_loss_weights: dict[str, float] | None = None
    pretrained: bool = False
    init_weights: str | None = None
    init_from: str | None = None
    checkpoint_every: int = Field(10, ge=1)
    seed: int | None = None
    max_steps_per_epoch: int | None = Field(None, ge=1)
    compile: bool = False
    run_id: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> TrainConfig:
        from lenscal.models import MODELS, ModelError, check_model_args

        if self.arch not in MODELS:
            raise ValueError(f"arch {self.arch!r} is not one of {sorted(MODELS)}")
        if "pretrained" in self.model_args:
            raise ValueError("model_args.pretrained: use train.pretrained")
        try:
            check_model_args(self.arch, self.arch_kwargs)
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        if self.effective_batch is not None and self.effective_batch % self.batch_size:
            raise ValueError(
                f"effective_batch ({self.effective_batch}) must be a multiple of "
                f"batch_size ({self.batch_size})"
            )
        if self.init_weights and self.init_from:
            raise ValueError("give init_weights (a path) or init_from (a registry ID), not both")
        if self.tier_loss_weights and any(w < 0 for w in self.tier_loss_weights.values()):
            raise ValueError("tier_loss_weights must be >= 0")
        return self

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of ``arch`` this config sets (the rest keep their defaults)."""
        team = {"base_ch": self.base_ch} if self.base_ch is not None else {}
        return {**team, **self.model_args}

    @property
    def accumulation_steps(self) -> int:
        return (self.effective_batch or self.batch_size) // self.batch_size


class TrainingConfig(_Section):
    dataset: DatasetConfig = DatasetConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()

    def snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        return canonical_sha256(self.snapshot())


def load_config(
    path: str | Path,
    *,
    overrides: list[str] | None = None,
    data_root: str | Path | None = None,
    preset: str = FULL,
) -> TrainingConfig:
    """Read and validate a YAML config (a file, or a name in configs/train) at ``preset``
    (full: as written; demo and others: its ``presets`` section); ``overrides`` are
    ``section.key=value`` (YAML values); ``data_root`` replaces the directory of every
    dataset path (remapping a team config)."""
    found, raw = read_config("train", path, what="training config", error=ConfigError)
    raw = apply_preset(raw, preset, source=str(found), error=ConfigError)
    return config_from_dict(raw, source=str(found), overrides=overrides, data_root=data_root)


def config_from_dict(
    raw: dict[str, Any],
    *,
    source: str = "config",
    overrides: list[str] | None = None,
    data_root: str | Path | None = None,
) -> TrainingConfig:
    data = copy.deepcopy(raw)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or parts[0] not in ("dataset", "augment", "train"):
            raise ConfigError(f"--set {item!r}: use section.key=value with section dataset, augment or train")
        data = merge_dotted(data, {key.strip(): yaml.safe_load(value)})
    if data_root is not None:
        dataset = data.setdefault("dataset", {})
        for key in ("manifest_path", "parquet_path", "shards_dir"):
            if dataset.get(key):
                dataset[key] = str(Path(data_root) / Path(str(dataset[key])).name)
    return validated(TrainingConfig, data, error=ConfigError, source=source)
