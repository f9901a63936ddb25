"""ResNet-18 (timm) with a 3-band stem and a ``Linear(512, 1)`` head."""

from __future__ import annotations

import torch

from lenscal.models.architectures import LensFinder, register_model, timm_backbone


def from_team(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The team's torchvision ResNet-18 keys (timm's are the same) -> lenscal's."""
    return {(f"head.1.{k[3:]}" if k.startswith("fc.") else f"backbone.{k}"): v for k, v in state.items()}


@register_model(
    "resnet18",
    parameters=11_177_025,
    embedding_dim=512,
    description="ResNet-18 backbone (3 bands; torchvision's layer names), Linear(512, 1) head",
    from_team=from_team,
)
def resnet18(pretrained: bool = False, dropout: float = 0.0) -> LensFinder:
    backbone, dim = timm_backbone("resnet18", "resnet18", pretrained)
    return LensFinder(backbone, dim, dropout)
