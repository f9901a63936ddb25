"""EfficientNetV2-S (timm) with the team's head ``Dropout(0.2) + Linear(1280, 1)``."""

from __future__ import annotations

from lenscal.models.architectures import LensFinder, register_model, timm_backbone


@register_model(
    "efficientnet_v2_s",
    parameters=20_178_769,
    embedding_dim=1280,
    description="EfficientNetV2-S backbone, Dropout(0.2) + Linear(1280, 1) head",
)
def efficientnet_v2_s(pretrained: bool = False, dropout: float = 0.2) -> LensFinder:
    backbone, dim = timm_backbone("efficientnetv2_s", "efficientnet_v2_s", pretrained)
    return LensFinder(backbone, dim, dropout)
