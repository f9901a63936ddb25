"""ResNet-18 (timm) with a 3-band stem and a ``Linear(512, 1)`` head."""

from __future__ import annotations

from lenscal.models.architectures import LensFinder, register_model, timm_backbone


@register_model(
    "resnet18",
    parameters=11_177_025,
    embedding_dim=512,
    description="ResNet-18 backbone (3 bands), Linear(512, 1) head",
)
def resnet18(pretrained: bool = False, dropout: float = 0.0) -> LensFinder:
    backbone, dim = timm_backbone("resnet18", "resnet18", pretrained)
    return LensFinder(backbone, dim, dropout)
