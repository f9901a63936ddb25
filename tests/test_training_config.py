"""The team's training configs validate unchanged; broken ones fail naming the key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from lenscal.training.config import ConfigError, config_from_dict, load_config

from .conftest import LENSCAL, TEAM_KIT

SEED_CONFIGS = sorted(
    p
    for p in (TEAM_KIT / "seed" / "configs").glob("*.yaml")
    if p.stem not in ("injection_priors", "negative_sampling_v1")
)


def test_there_are_17_team_configs() -> None:
    assert len(SEED_CONFIGS) == 17


@pytest.mark.parametrize("path", SEED_CONFIGS, ids=lambda p: p.stem)
def test_every_team_config_validates_unchanged(path: Path) -> None:
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    for section in ("dataset", "augment", "train"):
        for key, value in (raw.get(section) or {}).items():
            got = getattr(getattr(config, section), key)
            expected = float(value) if key in ("lr", "weight_decay") else value
            assert got == expected, (section, key)


def test_lenscal_configs_validate() -> None:
    ours = sorted(Path(__file__).resolve().parent.parent.joinpath("configs", "train").glob("*.yaml"))
    expected = {"gen1", "gen2", "gen3", "gen4", "gen5a", "gen5b", "gen5c", "resnet-gen1", "resnet-gen2"}
    assert {p.stem for p in ours} >= expected | {"paperIV_resnet18"}
    for path in ours:
        load_config(path)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"train": {"lrr": 0.1}}, "train.lrr: Extra inputs are not permitted"),
        ({"train": {"lr": -1}}, "train.lr: Input should be greater than 0"),
        ({"train": {"arch": "vit"}}, "arch 'vit' is not one of"),
        ({"train": {"batch_size": 64, "effective_batch": 100}}, "must be a multiple of batch_size (64)"),
        ({"dataset": {"mode": "streaming"}}, "dataset.mode: Input should be 'file_manifest', 'paired' or"),
        ({"dataset": {"preprocessing": "zscore"}}, "preprocessing 'zscore' is not one of"),
        (
            {"augment": {"core_dropout_prob": 1.5}},
            "augment.core_dropout_prob: Input should be less than or equal",
        ),
        ({"dataset": {"annulus_r_in": 40, "annulus_r_out": 30}}, None),
        ({"train": {"init_weights": "a.pt", "init_from": "gen2"}}, "init_weights (a path) or init_from"),
    ],
)
def test_broken_configs_name_the_key(change: dict[str, dict[str, object]], fragment: str | None) -> None:
    if fragment is None:  # the annulus order is checked when the spec is built
        with pytest.raises(ValueError, match="annulus_r_out"):
            config_from_dict(change).dataset.preprocess_spec()
        return
    with pytest.raises(ConfigError) as err:
        config_from_dict(change, source="cfg.yaml")
    assert fragment in str(err.value) and str(err.value).startswith("cfg.yaml: ")


def test_set_and_data_root_remap(tmp_path: Path) -> None:
    config = load_config(
        SEED_CONFIGS[0],
        overrides=["train.epochs=2", "train.device=cpu", "dataset.clip_range=20"],
        data_root=tmp_path,
    )
    assert config.train.epochs == 2 and config.train.device == "cpu" and config.dataset.clip_range == 20
    assert Path(config.dataset.manifest_path).parent == tmp_path
    assert config.dataset.preprocess_spec().clip_range == 20
    with pytest.raises(ConfigError, match=r"use section\.key=value"):
        load_config(SEED_CONFIGS[0], overrides=["epochs=2"])


def test_dry_run_prints_resolved_config_and_touches_no_data(tmp_path: Path) -> None:
    path = TEAM_KIT / "seed" / "configs" / "gen5c_efficientnet_weighted_loss.yaml"
    command = [*LENSCAL, "train", "--config", str(path), "--dry-run"]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    resolved = json.loads(run.stdout.split("\nconfig sha256")[0])
    assert resolved["train"]["unweighted_loss"] is False and resolved["dataset"]["annulus_r_in"] == 32.5
    assert '"annulus_r_in":32.5' in run.stdout.replace(" ", "")
    assert list(tmp_path.iterdir()) == []
