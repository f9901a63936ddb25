"""A finder's forward pass on raw cutouts: the bundle's preprocessing, then logits (+ embeddings).
Used by training validation and the scorer's torch engine (so both run one code path)."""

from __future__ import annotations

import contextlib

import torch

from lenscal.models.architectures import LensFinder
from lenscal.preprocess import PreprocessSpec, preprocess


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA when enabled; plain float32 on CPU (CPU bf16 is slower here)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(
    model: LensFinder,
    batch: torch.Tensor,
    spec: PreprocessSpec | None,
    *,
    amp: bool = True,
    channels_last: bool | None = None,
    return_embeddings: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N,) float32 and optionally embeddings (N, D) for one batch on the model's
    device. ``spec`` None means the batch is already preprocessed."""
    device = next(model.parameters()).device
    x = batch.to(device, non_blocking=True).float()
    if spec is not None:
        x = preprocess(x, spec)
    if channels_last if channels_last is not None else device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_for(device, amp):
        if return_embeddings:
            logits, embeddings = model.forward_with_embedding(x)
            return logits.float(), embeddings.float()
        return model(x).float(), None
