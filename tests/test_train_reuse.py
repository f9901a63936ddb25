"""Reusing a trained run (the train flow, `make demo`): a run the registry has Trained is
reused from its bundle, and one whose bundle is gone is refused in one message that names
the bundle and the ways on, before any training or server starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lenscal.errors import LenscalError
from lenscal.jobs.train import train_job, trained_bundle
from lenscal.registry.ids import RegistryError
from lenscal.registry.store import Registry
from lenscal_flows.demo import DEMO_MODEL, _check_model_reusable


def job(out: Path):
    return train_job(config="demo_resnet", preset="demo", run_id="demo_resnet", out_dir=out)


def trained(registry: Registry, out: Path, *, bundle: bool) -> None:
    registry.add("training", "demo_resnet", status="Trained", results_path=str(out), git_commit="")
    if bundle:
        (out / "best").mkdir(parents=True)
        (out / "best" / "model.json").write_text("{}")


def test_a_trained_run_is_reused_from_its_bundle(tmp_path: Path) -> None:
    registry = Registry()
    assert trained_bundle(job(tmp_path / "run"), registry) is None  # not in the registry: train
    trained(registry, tmp_path / "run", bundle=True)
    assert trained_bundle(job(tmp_path / "run"), registry) == tmp_path / "run" / "best"


def test_a_trained_run_whose_bundle_is_gone_is_refused_naming_it(tmp_path: Path) -> None:
    registry = Registry()
    trained(registry, tmp_path / "run", bundle=False)
    with pytest.raises(RegistryError) as error:
        trained_bundle(job(tmp_path / "run"), registry)
    message = str(error.value)
    assert f"its bundle {tmp_path / 'run' / 'best'} is gone" in message
    assert "lenscal registry set-status demo_resnet Failed" in message
    # the way out it names works: marked Failed, the run is trained again (not reused)
    registry.set_status("demo_resnet", "Failed")
    assert trained_bundle(job(tmp_path / "run"), registry) is None


def test_a_bundle_elsewhere_is_named(tmp_path: Path) -> None:
    registry = Registry()
    trained(registry, tmp_path / "old", bundle=True)
    with pytest.raises(RegistryError, match=f"its bundle is {tmp_path / 'old' / 'best'}, not "):
        trained_bundle(job(tmp_path / "new"), registry)


def test_demo_refuses_a_deleted_output_before_starting_anything(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    _check_model_reusable(out)  # nothing recorded: the demo trains
    trained(Registry(), out / "results" / "runs" / DEMO_MODEL, bundle=False)
    with pytest.raises(LenscalError, match=r"is gone .*LENSCAL_HOME=\$\(mktemp -d\) make demo"):
        _check_model_reusable(out)
    (out / "results" / "runs" / DEMO_MODEL / "best").mkdir(parents=True)
    (out / "results" / "runs" / DEMO_MODEL / "best" / "model.json").write_text("{}")
    _check_model_reusable(out)  # the bundle is there: reused
