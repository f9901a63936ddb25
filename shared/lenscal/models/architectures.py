"""The model registry. Every architecture is one module of this package that registers an
entrypoint with ``@register_model``: a function whose keyword arguments (with defaults) are
the architecture's own constructor arguments, returning a LensFinder that maps (N, 3, H, W)
preprocessed cutouts to one logit per cutout and exposes its penultimate embedding.

The trainer and the bundle loader know nothing about particular architectures: they pass
the arguments a config or bundle names, and ``create_model`` checks them against the
entrypoint's signature (an unknown argument is an error naming it).

ImageNet weights never come from the network at run time: ``pretrained=True`` loads
``$LENSCAL_PRETRAINED_DIR/<arch>.safetensors`` (or ``.pth``), default directory
``$LENSCAL_HOME/pretrained``, and fails with a message saying where to put the file.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lenscal.errors import LenscalError
from lenscal.home import lenscal_home


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


@dataclass(frozen=True)
class Architecture:
    """A registered entrypoint and what its module documents about it."""

    name: str
    build: Callable[..., LensFinder]
    #: Parameter count with default arguments, as published (checked by the tests).
    parameters: int
    #: Embedding width with default arguments.
    embedding_dim: int
    description: str
    #: The team's checkpoint keys -> lenscal's (None: no team checkpoints exist).
    from_team: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    #: Constructor arguments read off a state dict (e.g. a width), for imports.
    args_from_state: Callable[[dict[str, torch.Tensor]], dict[str, Any]] | None = None

    def defaults(self) -> dict[str, Any]:
        """The constructor arguments and their defaults (``pretrained`` excluded)."""
        return {
            name: p.default
            for name, p in inspect.signature(self.build).parameters.items()
            if name != "pretrained"
        }


MODELS: dict[str, Architecture] = {}


def register_model(
    name: str,
    *,
    parameters: int,
    embedding_dim: int,
    description: str,
    from_team: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    args_from_state: Callable[[dict[str, torch.Tensor]], dict[str, Any]] | None = None,
) -> Callable[[Callable[..., LensFinder]], Callable[..., LensFinder]]:
    def decorate(build: Callable[..., LensFinder]) -> Callable[..., LensFinder]:
        if name in MODELS:
            raise ModelError(f"architecture {name!r} is registered twice")
        MODELS[name] = Architecture(
            name, build, parameters, embedding_dim, description, from_team, args_from_state
        )
        return build

    return decorate


def check_model_args(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ModelError naming any argument the entrypoint of ``name`` does not take."""
    arch = architecture(name)
    accepted = inspect.signature(arch.build).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelError(
            f"bad arguments for {name}: it takes no argument(s) {unknown}; its arguments: "
            f"{sorted(arch.defaults())}"
        )


def architecture(name: str) -> Architecture:
    if name not in MODELS:
        raise ModelError(f"unknown architecture {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def create_model(name: str, **kwargs: Any) -> LensFinder:
    check_model_args(name, kwargs)
    try:
        return architecture(name).build(**kwargs)
    except TypeError as exc:
        raise ModelError(f"bad arguments for {name}: {exc}") from None


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pretrained_dir() -> Path:
    """Where ImageNet weights live: $LENSCAL_PRETRAINED_DIR, default $LENSCAL_HOME/pretrained."""
    return Path(os.environ.get("LENSCAL_PRETRAINED_DIR", lenscal_home() / "pretrained"))


def load_pretrained(module: nn.Module, arch: str) -> None:
    """Load ImageNet weights for ``arch`` from the pretrained directory into ``module``
    (classifier tensors skipped); a file that does not fit is an error."""
    directory = pretrained_dir()
    candidates = [directory / f"{arch}.safetensors", directory / f"{arch}.pth"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ModelError(
            f"ImageNet weights for {arch} not found: lenscal never downloads at run time. Bring a file "
            f"you have with `lenscal models import-weights FILE --arch {arch}` (-> {candidates[0]}), "
            "set LENSCAL_PRETRAINED_DIR, or set train.pretrained: false"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc.", "head."))}
    missing, _unexpected = module.load_state_dict(state, strict=False)
    if missing:
        raise ModelError(f"{path}: does not fit {arch} (missing {len(missing)} tensors, e.g. {missing[:3]})")


def timm_backbone(timm_name: str, arch: str, pretrained: bool) -> tuple[nn.Module, int]:
    """A timm network without its classifier (3 input bands) and its feature width."""
    import timm

    backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=3)
    if pretrained:
        load_pretrained(backbone, arch)
    return backbone, int(backbone.num_features)  # type: ignore[arg-type]
