"""Augmentations: what they keep, what they change, and their seeding."""

from __future__ import annotations

import numpy as np
import torch

from lenscal.rng import training_generator
from lenscal.training.augment import augment
from lenscal.training.config import AugmentConfig


def test_flips_and_rotations_permute_pixels_and_repeat_with_the_seed() -> None:
    x = torch.randn(16, 3, 101, 101)
    config = AugmentConfig(hflip=True, vflip=True, rot90=True)
    a = augment(x, config, training_generator(1, "augment", 2, 3))
    b = augment(x, config, training_generator(1, "augment", 2, 3))
    c = augment(x, config, training_generator(1, "augment", 2, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    for i in range(16):  # each output is one of the 8 symmetries of its input
        candidates = [torch.rot90(v, k, dims=(-2, -1)) for v in (x[i], x[i].flip(-1)) for k in range(4)]
        assert any(torch.equal(a[i], cand) for cand in candidates)


def test_core_dropout_zeroes_only_the_core() -> None:
    x = torch.ones(8, 3, 101, 101)
    out = augment(
        x, AugmentConfig(core_dropout_prob=1.0, core_radius=5.0), training_generator(0, "augment", 0, 0)
    )
    rows, cols = np.mgrid[0:101, 0:101]
    core = torch.from_numpy(np.hypot(rows - 50, cols - 50) < 5.0)
    assert (out[:, :, core] == 0).all() and (out[:, :, ~core] == 1).all()


def test_azimuthal_shuffle_keeps_each_ring_and_changes_the_image() -> None:
    x = torch.randn(4, 3, 101, 101)
    out = augment(
        x, AugmentConfig(az_shuffle_prob=1.0, az_shuffle_rmax=20), training_generator(0, "augment", 0, 0)
    )
    rows, cols = np.mgrid[0:101, 0:101]
    ring = torch.from_numpy(np.round(np.hypot(rows - 50, cols - 50)) == 7)
    for i in range(4):
        assert torch.equal(out[i][:, ring].sort(dim=-1).values, x[i][:, ring].sort(dim=-1).values)
    outside = torch.from_numpy(np.round(np.hypot(rows - 50, cols - 50)) >= 20)
    assert torch.equal(out[:, :, outside], x[:, :, outside]) and not torch.equal(out, x)
