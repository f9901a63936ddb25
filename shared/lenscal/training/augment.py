"""Batch augmentation on the training device, after preprocessing. Every random choice comes
from lenscal.rng.training_generator(seed, "augment", epoch, step), so a resumed run repeats it exactly.

- hflip / vflip / rot90: per-cutout random flips and quarter turns (lensing has no preferred
  orientation);
- core dropout (the team's R1): with probability p, pixels within ``core_radius`` px of the
  centre pixel (H // 2, W // 2) are set to 0 (the annulus median after raw_robust), hiding
  the lens galaxy's core;
- azimuthal shuffle: with probability p, pixels within ``az_shuffle_rmax`` px are permuted
  within their 1-px ring, keeping the radial profile but destroying arc morphology.
"""

from __future__ import annotations

import functools

import torch

from lenscal.preprocess import radius_map
from lenscal.training.config import AugmentConfig


def augment(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    n = batch.shape[0]
    dev = batch.device

    def coin(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) < p).to(dev).view(n, 1, 1, 1)

    if config.hflip:
        batch = torch.where(coin(0.5), batch.flip(-1), batch)
    if config.vflip:
        batch = torch.where(coin(0.5), batch.flip(-2), batch)
    if config.rot90:
        turns = torch.randint(0, 4, (n,), generator=generator).to(dev).view(n, 1, 1, 1)
        rotated = batch
        for k in range(1, 4):
            rotated = torch.where(turns == k, torch.rot90(batch, k, dims=(-2, -1)), rotated)
        batch = rotated
    if config.core_dropout_prob > 0:
        core = _disc(batch.shape[-2], batch.shape[-1], config.core_radius, str(dev))
        batch = torch.where(coin(config.core_dropout_prob) & core, torch.zeros((), device=dev), batch)
    if config.az_shuffle_prob > 0:
        chosen = coin(config.az_shuffle_prob).view(n)
        flat = batch.reshape(n, batch.shape[1], -1).clone()
        for ring in _rings(batch.shape[-2], batch.shape[-1], config.az_shuffle_rmax, str(dev)):
            keys = torch.rand(n, ring.numel(), generator=generator).to(dev)
            perm = ring[keys.argsort(dim=1)]  # (n, K) shuffled pixel indices
            shuffled = torch.gather(flat, 2, perm.unsqueeze(1).expand(-1, flat.shape[1], -1))
            current = flat[:, :, ring]
            flat[:, :, ring] = torch.where(chosen.view(n, 1, 1), shuffled, current)
        batch = flat.reshape(batch.shape)
    return batch


@functools.lru_cache(maxsize=8)
def _disc(h: int, w: int, radius: float, device: str) -> torch.Tensor:
    return (radius_map(h, w) < radius).to(device)


@functools.lru_cache(maxsize=8)
def _rings(h: int, w: int, rmax: float, device: str) -> tuple[torch.Tensor, ...]:
    r = torch.round(radius_map(h, w)).reshape(-1).long()
    return tuple(torch.nonzero(r == k).reshape(-1).to(device) for k in range(1, int(rmax)) if (r == k).any())
