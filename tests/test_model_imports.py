"""Weights from files users already have: torchvision ImageNet weights, team checkpoints
(imported, then served and scored like the team's own model), and refused unsafe pickles."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lenscal.errors import LenscalError
from lenscal.models import create_model
from lenscal.models.bundle import load_bundle
from lenscal.models.imports import import_checkpoint, import_weights
from lenscal.preprocess import PreprocessSpec, preprocess
from lenscal.rpc.scorer_client import GrpcScorer
from lenscal.scoring.local import LocalScorer

from .conftest import LENSCAL
from .servers import running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


# --- the team's BottleneckedResNet, as their dhs/model.py defines it (the external format) --


class TeamBlock(nn.Module):
    def __init__(self, c_in: int, mid: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = (
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(mid),
        )
        self.conv3, self.bn3 = nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class TeamResNet(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        )
        self.layer1, self.layer2 = TeamBlock(c, c, 2 * c, 1), TeamBlock(2 * c, c, 4 * c, 2)
        self.layer3, self.layer4 = TeamBlock(4 * c, 2 * c, 8 * c, 2), TeamBlock(8 * c, 2 * c, 8 * c, 2)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Perturb every weight and BatchNorm statistic (keeping the scale of the default init,
    so a deep network's activations stay finite), so a wrongly mapped tensor shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if "num_batches" in name:
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if "running_var" in name:
                tensor.copy_(1.0 + 0.3 * noise.abs())
            elif "running_mean" in name or name.endswith("bias"):
                tensor.copy_(0.1 * noise)
            else:
                tensor.mul_(1.0 + 0.3 * noise).add_(0.01 * noise)
    return model.eval()


@pytest.fixture()
def cutouts() -> np.ndarray:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 0.01, (12, 3, 101, 101)).astype(np.float32)
    x[:, :, 45:56, 45:56] += rng.uniform(0, 1, (12, 3, 1, 1)).astype(np.float32)
    return x


def test_team_checkpoint_is_imported_and_served(tmp_path: Path, cutouts: np.ndarray) -> None:
    team = randomise(TeamResNet(16), seed=1)
    checkpoint = tmp_path / "best.pt"
    dataset = {"preprocessing": "raw_robust", "crop": True, "crop_size": 0}
    recorded = {"epoch": 7, "model": team.state_dict(), "best_auc": 0.97, "dataset": dataset, "train": {}}
    torch.save(recorded, checkpoint)
    run = subprocess.run(
        [*LENSCAL, "models", "import-checkpoint", str(checkpoint), "--arch", "bottlenecked_resnet",
         "--out", str(tmp_path / "bundle"), "--run-id", "resnet-gen7"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.spec.crop_size == 64 and bundle.meta["arch_kwargs"] == {"base_ch": 16}  # from the file
    with torch.no_grad():
        expected = team(preprocess(torch.from_numpy(cutouts), bundle.spec)).squeeze(-1).numpy()
    local = LocalScorer(tmp_path / "bundle").score(cutouts)
    np.testing.assert_allclose(local.logits, expected, rtol=1e-5, atol=1e-5)
    with (
        running_service("scorer", "--model", str(tmp_path / "bundle"), "--engine", "onnx") as (endpoint, _),
        GrpcScorer(endpoint, wire_dtype="float32") as client,
    ):
        client.wait_ready()
        served = client.score(cutouts)
    np.testing.assert_allclose(served.logits, expected, rtol=1e-4, atol=1e-4)
    assert served.model_id == "resnet-gen7"


def test_torchvision_efficientnet_weights_and_checkpoints_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutouts: np.ndarray
) -> None:
    import torchvision

    monkeypatch.setenv("LENSCAL_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    imagenet = randomise(torchvision.models.efficientnet_v2_s(weights=None), seed=2)  # 1000-class head
    torch.save(imagenet.state_dict(), tmp_path / "efficientnet_v2_s-imagenet.pth")
    stored = import_weights(tmp_path / "efficientnet_v2_s-imagenet.pth", "efficientnet_v2_s")
    assert stored == tmp_path / "pretrained" / "efficientnet_v2_s.safetensors"
    ours = create_model("efficientnet_v2_s", pretrained=True)
    for key, value in imagenet.state_dict().items():
        if key.startswith("features."):
            torch.testing.assert_close(ours.state_dict()[f"backbone.{key}"], value)

    team = torchvision.models.efficientnet_v2_s(weights=None)  # the team's build_efficientnet_v2_s
    team.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1))
    randomise(team, seed=3)
    torch.save({"model_state_dict": team.state_dict()}, tmp_path / "gen4.pt")
    spec = PreprocessSpec(annulus_r_in=20, annulus_r_out=32, crop_size=None)
    bundle = import_checkpoint(tmp_path / "gen4.pt", "efficientnet_v2_s", tmp_path / "gen4", spec=spec)
    with torch.no_grad():
        expected = team(preprocess(torch.from_numpy(cutouts[:3]), spec)).squeeze(-1).numpy()
    got = LocalScorer(bundle).score(cutouts[:3])
    np.testing.assert_allclose(got.logits, expected, rtol=1e-4, atol=1e-4)


class NotATensor:
    """Anything a weights-only load must refuse to rebuild."""


def test_unsafe_pickles_are_refused(tmp_path: Path) -> None:
    team = TeamResNet(8)
    torch.save({"model": team.state_dict(), "extra": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(LenscalError, match="refused: the file holds Python objects"):
        import_checkpoint(tmp_path / "evil.pt", "bottlenecked_resnet", tmp_path / "b")
    assert not (tmp_path / "b").exists()
    torch.save({"model": team.state_dict()}, tmp_path / "bare.pt")
    with pytest.raises(LenscalError, match="records no preprocessing"):
        import_checkpoint(tmp_path / "bare.pt", "bottlenecked_resnet", tmp_path / "b")
    with pytest.raises(LenscalError, match="does not fit the resnet18 backbone"):
        torch.save(team.state_dict(), tmp_path / "wrong.pth")
        import_weights(tmp_path / "wrong.pth", "resnet18")
