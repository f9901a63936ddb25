"""EfficientNetV2-S as the team built it: torchvision's architecture (BatchNorm eps 1e-3,
stochastic depth 0.2) with the head ``Dropout(0.2) + Linear(1280, 1)``. Its backbone's keys
are torchvision's (``features.*``), so torchvision ImageNet weights and the team's
checkpoints load directly (``lenscal models import-weights`` / ``import-checkpoint``)."""

from __future__ import annotations

import torch
from torch import nn

from lenscal.models.architectures import LensFinder, load_pretrained, register_model


class TorchvisionTrunk(nn.Module):
    """torchvision's EfficientNet without its classifier: features, average pool, flatten."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import efficientnet_v2_s as build

        network = build(weights=None)
        self.features = network.features
        self.avgpool = network.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


def from_team(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The team's keys (torchvision's: ``features.*``, ``classifier.1.*``) -> lenscal's."""
    return {
        ("head.1." + k.removeprefix("classifier.1.")) if k.startswith("classifier.1.") else f"backbone.{k}": v
        for k, v in state.items()
    }


@register_model(
    "efficientnet_v2_s",
    parameters=20_178_769,
    embedding_dim=1280,
    description="torchvision EfficientNetV2-S backbone, Dropout(0.2) + Linear(1280, 1) head",
    from_team=from_team,
)
def efficientnet_v2_s(pretrained: bool = False, dropout: float = 0.2) -> LensFinder:
    backbone = TorchvisionTrunk()
    if pretrained:
        load_pretrained(backbone, "efficientnet_v2_s")
    return LensFinder(backbone, 1280, dropout)
