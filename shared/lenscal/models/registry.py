"""Model registry. Every model maps (N, 3, H, W) preprocessed cutouts to one logit per
cutout and exposes its penultimate embedding:

- ``efficientnet_v2_s``: timm backbone (3 bands), head ``Dropout(0.2) + Linear(1280, 1)``,
  20,178,769 parameters;
- ``bottlenecked_resnet``: the team's 195K ResNet (base 27 channels: 195,589 parameters);
- ``resnet18``: timm ResNet-18 with a 3-band stem and ``Linear(512, 1)``.

ImageNet weights never come from the network at run time: ``pretrained=True`` loads
``$LENSCAL_PRETRAINED_DIR/<arch>.safetensors`` (or ``.pth``), default directory
``$LENSCAL_HOME/pretrained``, and fails with a message saying where to put the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lenscal.errors import LenscalError
from lenscal.home import lenscal_home
from lenscal.models.resnet import BottleneckedResNet


class ModelError(LenscalError):
    """Unknown architecture, bad model arguments, or missing pretrained weights."""


class LensFinder(nn.Module):
    """A backbone producing (N, D) embeddings plus a linear head producing (N,) logits."""

    def __init__(self, backbone: nn.Module, embedding_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.embedding_dim = embedding_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).squeeze(-1)

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(x)
        return self.head(embedding).squeeze(-1), embedding

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())


def _timm_backbone(name: str, pretrained: bool, arch: str) -> tuple[nn.Module, int]:
    import timm

    backbone = timm.create_model(name, pretrained=False, num_classes=0, in_chans=3)
    if pretrained:
        _load_pretrained(backbone, arch)
    return backbone, cast(int, backbone.num_features)


def _load_pretrained(backbone: nn.Module, arch: str) -> None:
    directory = Path(os.environ.get("LENSCAL_PRETRAINED_DIR", lenscal_home() / "pretrained"))
    candidates = [directory / f"{arch}.safetensors", directory / f"{arch}.pth"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ModelError(
            f"ImageNet weights for {arch} not found: lenscal never downloads at run time. Put them at "
            f"{candidates[0]} (or .pth), or set LENSCAL_PRETRAINED_DIR, or set train.pretrained: false"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc.", "head."))}
    missing, _unexpected = backbone.load_state_dict(state, strict=False)
    if missing:
        raise ModelError(f"{path}: does not fit {arch} (missing {len(missing)} tensors, e.g. {missing[:3]})")


def _efficientnet_v2_s(pretrained: bool = False, dropout: float = 0.2) -> LensFinder:
    backbone, dim = _timm_backbone("efficientnetv2_s", pretrained, "efficientnet_v2_s")
    return LensFinder(backbone, dim, dropout)


def _resnet18(pretrained: bool = False, dropout: float = 0.0) -> LensFinder:
    backbone, dim = _timm_backbone("resnet18", pretrained, "resnet18")
    return LensFinder(backbone, dim, dropout)


def _bottlenecked_resnet(base_ch: int = 27, pretrained: bool = False, dropout: float = 0.0) -> LensFinder:
    if pretrained:
        raise ModelError("bottlenecked_resnet has no ImageNet weights; set train.pretrained: false")
    backbone = BottleneckedResNet(base_ch)
    return LensFinder(backbone, backbone.embedding_dim, dropout)


MODELS: dict[str, Callable[..., LensFinder]] = {
    "efficientnet_v2_s": _efficientnet_v2_s,
    "bottlenecked_resnet": _bottlenecked_resnet,
    "resnet18": _resnet18,
}


def create_model(name: str, **kwargs: Any) -> LensFinder:
    if name not in MODELS:
        raise ModelError(f"unknown architecture {name!r}; known: {sorted(MODELS)}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:
        raise ModelError(f"bad arguments for {name}: {exc}") from None


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
