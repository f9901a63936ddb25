"""Augmentations: what they keep, what they change, and their seeding."""

from __future__ import annotations

import numpy as np
import torch

from lenscal.preprocess import PreprocessSpec, preprocess
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


def test_residual_radial_profile_matches_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    cutout = rng.normal(0, 0.01, (3, 101, 101)).astype(np.float32)
    rows, cols = np.mgrid[0:101, 0:101]
    radius = np.hypot(rows - 50, cols - 50)
    cutout += (5 * np.exp(-radius / 4)).astype(np.float32)  # a smooth host
    cutout[:, 40:44, 60:66] += 0.5  # an off-centre feature
    ring_of = np.round(radius).astype(int)
    residual = cutout.astype(np.float64).copy()
    for band in range(3):
        for k in range(ring_of.max() + 1):
            mask = ring_of == k
            residual[band][mask] -= np.median(cutout[band][mask])
    annulus = (radius >= 20) & (radius < 32)
    expected = np.empty_like(residual)
    for band in range(3):
        med = np.median(residual[band][annulus])
        mad = np.median(np.abs(residual[band][annulus] - med))
        expected[band] = np.clip((residual[band] - med) / mad, -10, 10)
    got = preprocess(torch.from_numpy(cutout[None]), PreprocessSpec(kind="residual_radial_profile"))[
        0
    ].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert got[:, 41, 62].min() > 5  # the feature survives, the host does not
    assert abs(got[:, 50, 50]).max() < 3
