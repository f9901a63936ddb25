"""The team's BottleneckedResNet (docs/science.md): stem conv 5x5 stride 2 (3 -> c) + BN + ReLU;
bottleneck blocks (1x1 -> 3x3 -> 1x1, projection shortcuts) c -> 2c stride 1 (mid c),
2c -> 4c stride 2 (mid c), 4c -> 8c stride 2 (mid 2c), 8c -> 8c stride 2 (mid 2c); global
average pool. Convolutions have no bias (BatchNorm follows each). Base 27: 195,589
parameters with the Linear(8c, 1) head."""

from __future__ import annotations

import torch
from torch import nn

from lenscal.models.architectures import LensFinder, ModelError, register_model


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, mid: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class BottleneckedResNet(nn.Module):
    def __init__(self, base_ch: int = 27) -> None:
        super().__init__()
        c = base_ch
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(
            Bottleneck(c, 2 * c, c, 1),
            Bottleneck(2 * c, 4 * c, c, 2),
            Bottleneck(4 * c, 8 * c, 2 * c, 2),
            Bottleneck(8 * c, 8 * c, 2 * c, 2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = 8 * c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x))).flatten(1)


#: The team's block layer names -> positions in lenscal's Bottleneck.body.
_TEAM_BODY = {"conv1": 0, "bn1": 1, "conv2": 3, "bn2": 4, "conv3": 6, "bn3": 7}


def from_team(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The team's keys (``stem.*``, ``layerN.conv1 ... bn3``, ``layerN.shortcut.*``, ``fc.*``)
    -> lenscal's."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "fc":
            out[f"head.1.{rest}"] = value
        elif head == "stem":
            out[f"backbone.{key}"] = value
        elif head.startswith("layer") and head[5:].isdigit():
            block = int(head[5:]) - 1
            part, _, leaf = rest.partition(".")
            target = f"shortcut.{leaf}" if part == "shortcut" else f"body.{_TEAM_BODY[part]}.{leaf}"
            out[f"backbone.blocks.{block}.{target}"] = value
        else:
            raise ModelError(f"team checkpoint key {key!r} is not part of a BottleneckedResNet")
    return out


@register_model(
    "bottlenecked_resnet",
    parameters=195_589,
    embedding_dim=216,
    description="the team's BottleneckedResNet (base 27 channels), Linear(8c, 1) head",
    from_team=from_team,
    args_from_state=lambda state: {"base_ch": int(state["stem.0.weight"].shape[0])},
)
def bottlenecked_resnet(base_ch: int = 27, pretrained: bool = False, dropout: float = 0.0) -> LensFinder:
    if pretrained:
        raise ModelError("bottlenecked_resnet has no ImageNet weights; set train.pretrained: false")
    backbone = BottleneckedResNet(base_ch)
    return LensFinder(backbone, backbone.embedding_dim, dropout)
