"""Sealed bundles: any edit to a file that affects a score is refused on load, and a malformed
bundle is one line and exit status 2 from `lenscal serve scorer`, never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from lenscal.models import create_model
from lenscal.models.bundle import BundleError, export_onnx, load_bundle, save_bundle
from lenscal.preprocess import PreprocessSpec

from .conftest import LENSCAL


def make(path: Path, seed: int, run_id: str | None = None) -> Path:
    torch.manual_seed(seed)
    bundle = save_bundle(
        path, create_model("bottlenecked_resnet", base_ch=4), arch="bottlenecked_resnet",
        arch_kwargs={"base_ch": 4}, spec=PreprocessSpec(), run_id=run_id,
    )  # fmt: skip
    export_onnx(bundle)
    return bundle


@pytest.fixture()
def two(tmp_path: Path) -> tuple[Path, Path]:
    return make(tmp_path / "a", 1, "resnet-gen1"), make(tmp_path / "b", 2, "resnet-gen2")


def test_a_sealed_bundle_loads_and_is_known_by_its_seal(two: tuple[Path, Path]) -> None:
    a = load_bundle(two[0])
    assert len(a.bundle_sha256) == 64 and a.bundle_sha256 != load_bundle(two[1]).bundle_sha256


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        ("clip", "model.json: SHA-256 differs from the bundle's seal: refusing tampered model.json"),
        ("onnx", "model.onnx: SHA-256 differs from the bundle's seal: refusing tampered ONNX model"),
        ("weights", "refusing tampered weights"),
        ("extra", "not covered by the bundle's seal"),
        ("missing", "missing from the bundle"),
    ],
)
def test_every_edit_is_refused(two: tuple[Path, Path], edit: str, fragment: str) -> None:
    a, b = two
    if edit == "clip":
        meta = json.loads((a / "model.json").read_text())
        meta["preprocess"]["clip_range"] = 20.0
        (a / "model.json").write_text(json.dumps(meta))
    elif edit == "onnx":
        shutil.copy(b / "model.onnx", a / "model.onnx")  # another model's ONNX
    elif edit == "weights":
        shutil.copy(b / "model.safetensors", a / "model.safetensors")
    elif edit == "extra":
        (a / "calibration.json").write_text("{}")
    else:
        (a / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"refusing|missing|not covered") as err:
        load_bundle(a)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("json", "model.json: not valid JSON"),
        ("keys", "missing key(s) ['arch_kwargs']"),
        ("onnx", "ONNX Runtime cannot load it"),
        ("seal", "bundle is not sealed"),
        ("edit", "refusing tampered model.json"),
    ],
)
def test_broken_bundles_fail_in_one_line_with_status_2(tmp_path: Path, damage: str, fragment: str) -> None:
    from lenscal.models.bundle import seal

    bundle = make(tmp_path / "m", 3, "resnet-gen3")
    if damage == "json":
        (bundle / "model.json").write_text("{not json")
        seal(bundle)  # even a correctly sealed bundle must hold a valid model.json
    elif damage == "keys":
        meta = json.loads((bundle / "model.json").read_text())
        del meta["arch_kwargs"]
        (bundle / "model.json").write_text(json.dumps(meta))
        seal(bundle)
    elif damage == "onnx":
        (bundle / "model.onnx").write_bytes(b"garbage" * 100)
        seal(bundle)
    elif damage == "seal":
        (bundle / "seal.json").unlink()
    else:  # an edited clip range, served under the same name before bundles were sealed
        meta = json.loads((bundle / "model.json").read_text())
        meta["preprocess"]["clip_range"] = 20.0
        (bundle / "model.json").write_text(json.dumps(meta))
    run = subprocess.run(
        [*LENSCAL, "serve", "scorer", "--model", str(bundle), "--engine", "onnx", "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], run.stderr
