"""The torch-free ONNX scorer (the CPU scorer image): with torch, scipy, pandas and Prefect
made unimportable it serves over gRPC, its scores equal the torch engine's within 1e-4 on
the six real DR10 cutouts and on mock cutouts, it refuses preprocessing overrides with a
reason, and the distributions it loads are exactly those deploy/requirements/scorer-onnx.txt
lists (so the image's requirement list cannot drift from the code)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lenscal.data.cutouts import read_cutout
from lenscal.errors import LenscalError
from lenscal.preprocess import PreprocessOverride, PreprocessSpec
from lenscal.rpc.launch import running_service
from lenscal.rpc.scorer_client import GrpcScorer
from lenscal.scoring.torch_engine import TorchEngine

from .conftest import REPO
from .worlds import small_bundle

pytestmark = pytest.mark.slow

#: Packages the torch-free image does not have; made unimportable in the child processes.
ABSENT = ("torch", "torchvision", "timm", "scipy", "pandas", "prefect", "sklearn", "matplotlib")
BLOCK = f"""
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Absent())
"""
REQUIREMENTS = REPO / "deploy" / "requirements" / "scorer-onnx.txt"


SPECS = {
    # a central 64 px crop, then the gen1-4 annulus (an even pixel count: mean of two middles)
    "crop64": PreprocessSpec(crop_size=64),
    # the gen5 annulus, and the team's residual radial profile (32 ring medians)
    "profile": PreprocessSpec.for_annulus((32.5, 45.0), kind="residual_radial_profile", clip_range=5.0),
}


@pytest.fixture(scope="module", params=sorted(SPECS))
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(tmp_path_factory.mktemp("b") / "bundle", spec=SPECS[request.param])


def cutouts(real_cutout_paths: list[Path]) -> np.ndarray:
    real = np.stack([read_cutout(p) for p in real_cutout_paths])
    rng = np.random.default_rng(11)
    mock = rng.normal(0.0, 0.01, (26, 3, 101, 101)).astype(np.float32)
    mock[:, :, 40:61, 40:61] += rng.uniform(0.05, 2.0, (26, 1, 1, 1)).astype(np.float32)
    mock[3, 0, 10, 10] = np.nan  # a masked pixel
    mock[5] = 0.0  # a blank cutout: the MAD floor
    return np.concatenate([real, mock]).astype(np.float32)


def test_torch_free_scorer_matches_torch_over_grpc(bundle: Path, real_cutout_paths: list[Path]) -> None:
    batch = cutouts(real_cutout_paths)
    torch_engine = TorchEngine(str(bundle), "cpu", amp=False)
    expected_logits, _ = torch_engine.infer(batch, torch_engine.bundle.spec, False)
    expected = 1 / (1 + np.exp(-expected_logits.astype(np.float64)))
    program = (sys.executable, "-c", BLOCK + "from lenscal_scorer.__main__ import main; main()")
    args = ("--model", str(bundle), "--engine", "onnx", "--device", "cpu")
    with (
        running_service(*args, program=program) as (endpoint, _proc),
        GrpcScorer(endpoint, wire_dtype="float32") as scorer,
    ):
        (info,) = scorer.model_info()
        assert info.engine == "onnx" and info.spec == torch_engine.bundle.spec
        got = scorer.score(batch)
        assert np.abs(got.probabilities - expected).max() < 1e-4
        assert np.abs(got.logits - expected_logits).max() < 1e-3  # logits are up to ~+-10
        with pytest.raises(LenscalError, match="runs without torch"):
            scorer.score(batch[:2], override=PreprocessOverride(clip_range=3.0))


def test_torch_free_scorer_loads_only_its_listed_requirements(bundle: Path) -> None:
    code = (
        BLOCK
        + f"""
import importlib.metadata as md, json
import numpy as np
import lenscal_scorer.server, lenscal_scorer.__main__
from lenscal.scoring.engines import make_engine
engine = make_engine("auto", {str(bundle)!r}, "cpu")
engine.infer(np.zeros((2, 3, 101, 101), np.float32), engine.bundle.spec, True)
dists = md.packages_distributions()
found = {{d for m in list(sys.modules) for d in dists.get(m.split(".")[0], [])}}
print(json.dumps({{"engine": engine.name, "dists": sorted(found)}}))
"""
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["engine"] == "onnx"  # auto picks ONNX Runtime when torch is absent

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    listed = {
        norm(re.split(r"[<>=!~ ;\[]", line.strip())[0])
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # lenscal itself; setuptools/grpcio-tools appear only through shared namespace folders.
    loaded = {norm(d) for d in report["dists"]} - {"lenscal", "setuptools", "grpcio-tools"}
    # Pulled in by the listed ones (pydantic's and typer's own dependencies).
    transitive = {"annotated-types", "pydantic-core", "typing-extensions", "typing-inspection"}
    transitive |= {"annotated-doc", "shellingham", "click", "rich", "markdown-it-py", "mdurl", "pygments"}
    transitive |= {"coloredlogs", "humanfriendly", "flatbuffers", "packaging", "sympy", "mpmath"}
    assert loaded - transitive <= listed, f"loaded but not listed: {sorted(loaded - transitive - listed)}"
    assert listed <= loaded, f"listed but never loaded: {sorted(listed - loaded)}"
