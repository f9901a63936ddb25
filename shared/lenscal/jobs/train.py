"""The training job: `lenscal train` and the ``train`` flow."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from lenscal.home import FULL, locate_config
from lenscal.registry.ids import RegistryError
from lenscal.registry.store import Registry
from lenscal.training.config import ConfigError, TrainingConfig, load_config
from lenscal.training.loop import TrainResult, check_training_id, train
from lenscal.validation import validated


class TrainJob(BaseModel):
    """A training config (a file, or a name in configs/train) at a preset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: str
    preset: str = FULL
    overrides: list[str] = []  # section.key=value (YAML values), applied last
    data_root: Path | None = None  # replaces the directory of every dataset path
    shards: Path | None = None  # read these shards instead of the config's manifest
    run_id: str | None = None  # default: train.run_id, else the config's name
    out_dir: Path | None = None  # default: train.out_dir
    record: bool = True
    restart: bool = False

    def path(self) -> Path:
        return locate_config("train", self.config, what="training config", error=ConfigError)

    def settings(self) -> list[str]:
        """What the job sets over the config: its directories, its ID, then the overrides."""
        values = []
        if self.out_dir is not None:
            values.append(f"train.out_dir={self.out_dir}")
        if self.run_id is not None:
            values.append(f"train.run_id={self.run_id}")
        if self.shards is not None:
            values.append(f"dataset.shards_dir={self.shards}")
        return [*values, *self.overrides]

    def resolved(self) -> TrainingConfig:
        """The config at the preset with the job's settings; a bad override names its key.
        Read once per job."""
        return self.config_loaded

    @cached_property
    def config_loaded(self) -> TrainingConfig:
        return load_config(
            self.path(), overrides=self.settings(), data_root=self.data_root, preset=self.preset
        )

    def recorded_as(self, config: TrainingConfig) -> str | None:
        return self.run_id or config.train.run_id or self.path().stem

    def check(self) -> TrainingConfig:
        """Every input checked (config, preset, overrides, the registry ID) before any work."""
        config = self.resolved()
        if self.record:
            check_training_id(self.recorded_as(config))
        return config


def train_job(**values: Any) -> TrainJob:
    return validated(TrainJob, values, error=ConfigError, source="training job")


def trained_bundle(job: TrainJob, registry: Registry) -> Path | None:
    """The run's exported bundle when the registry already has it trained (reused, not
    retrained, unless ``restart``). A run the registry has Trained whose bundle is gone is
    refused here, naming the bundle and the ways on (training it would be refused anyway, with
    less to go on)."""
    config = job.resolved()
    run_id, best = job.recorded_as(config), Path(config.train.out_dir) / "best"
    if job.restart or run_id is None or not registry.exists(run_id):
        return None
    if registry.get(run_id).status != "Trained":
        return None
    if not (best / "model.json").is_file():
        raise RegistryError(_missing_bundle(run_id, best, registry.get(run_id).results_path))
    return best


def _missing_bundle(run_id: str, best: Path, recorded: str | None = None) -> str:
    """Why a run the registry has Trained cannot be reused from ``best``, and what to do.
    ``recorded``: the record's results directory, named when its bundle is still there."""
    elsewhere = Path(recorded) / "best" if recorded else None
    if (
        elsewhere is not None
        and elsewhere.resolve() != best.resolve()
        and (elsewhere / "model.json").is_file()
    ):
        where = f"its bundle is {elsewhere}, not {best}. Point the results there, "
    else:
        where = f"its bundle {best} is gone (was its output directory deleted?). Put the bundle back, "
    return (
        f"registry: {run_id} is Trained, but {where}train under another run ID, or mark the record "
        f"`lenscal registry set-status {run_id} Failed` to train {run_id} again"
    )


def run_train_job(
    job: TrainJob, *, registry_url: str | None = None, progress: bool | None = None
) -> TrainResult:
    """Train (resuming after a kill), export the best bundle, record the run."""
    config = job.check()
    registry = Registry(registry_url) if job.record else None
    return train(
        config,
        config_path=job.path(),
        registry=registry,
        run_id=job.recorded_as(config) if job.record else job.run_id,
        restart=job.restart,
        progress=progress,
    )
