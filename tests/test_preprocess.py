"""preprocess() against a straightforward numpy implementation written here, on real cutouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from lenscal.data.cutouts import read_cutout
from lenscal.errors import PreprocessError
from lenscal.preprocess import ANNULUS_GEN1_4, ANNULUS_GEN5, PreprocessSpec, preprocess

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def reference_raw_robust(cutout: np.ndarray, r_in: float, r_out: float, clip: float) -> np.ndarray:
    """The team's normalisation, one cutout at a time, in float64 numpy."""
    x = np.where(np.isnan(cutout), 0.0, cutout.astype(np.float64))
    size = x.shape[-1]
    centre = (size - 1) / 2
    out = np.empty_like(x)
    for band in range(x.shape[0]):
        ring = []
        for row in range(size):
            for col in range(size):
                if r_in <= np.sqrt((row - centre) ** 2 + (col - centre) ** 2) < r_out:
                    ring.append(x[band, row, col])
        median = np.median(ring)
        mad = np.median(np.abs(np.asarray(ring) - median))
        out[band] = np.clip((x[band] - median) / mad, -clip, clip)
    return out


@pytest.fixture(scope="module")
def real_batch(real_cutout_paths: list[Path]) -> np.ndarray:
    batch = np.stack([read_cutout(p) for p in real_cutout_paths])
    assert batch.shape == (6, 3, 101, 101)
    return batch


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("annulus", [ANNULUS_GEN1_4, ANNULUS_GEN5])
@pytest.mark.parametrize("clip", [2.5, 10.0, 20.0, 100.0])
def test_matches_numpy_reference_on_real_cutouts(
    real_batch: np.ndarray, annulus: tuple[float, float], clip: float, device: str
) -> None:
    spec = PreprocessSpec.for_annulus(annulus, clip_range=clip)
    got = preprocess(torch.from_numpy(real_batch).to(device), spec).cpu().numpy()
    assert got.shape == real_batch.shape and got.dtype == np.float32
    for i, cutout in enumerate(real_batch):
        expected = reference_raw_robust(cutout, *annulus, clip)
        np.testing.assert_allclose(got[i], expected, rtol=2e-5, atol=2e-5 * clip)
    assert np.abs(got).max() <= clip


def test_nan_pixels_become_zero_flux_and_even_counts_average_middle_values(real_batch: np.ndarray) -> None:
    cutout = real_batch[0].copy()
    cutout[:, :10, :] = np.nan  # a masked strip crossing the (32.5, 45) annulus
    spec = PreprocessSpec.for_annulus(ANNULUS_GEN5, clip_range=50.0)
    got = preprocess(torch.from_numpy(cutout[None]), spec)[0].numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, reference_raw_robust(cutout, *ANNULUS_GEN5, 50.0), rtol=2e-5, atol=1e-3)


def test_hand_computed_tiny_case() -> None:
    # 5x5 cutout, annulus 1 <= r < 1.5 about (2, 2): the 8 neighbours of the centre.
    band = np.zeros((5, 5), np.float32)
    ring_values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    for (r, c), v in zip(
        [(1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2), (3, 3)], ring_values, strict=True
    ):
        band[r, c] = v
    band[2, 2] = 100.0
    # median of 1..8 = 4.5; |x - 4.5| = 3.5,2.5,1.5,.5,.5,1.5,2.5,3.5 -> MAD = 2.0
    spec = PreprocessSpec(annulus_r_in=1.0, annulus_r_out=1.5, clip_range=10.0)
    got = preprocess(torch.from_numpy(np.stack([band] * 3)[None]), spec)[0, 0].numpy()
    assert got[2, 2] == pytest.approx(10.0)  # (100 - 4.5) / 2 = 47.75, clipped
    assert got[1, 1] == pytest.approx((1.0 - 4.5) / 2.0)
    assert got[0, 0] == pytest.approx((0.0 - 4.5) / 2.0)


def test_blank_band_gives_zeros_not_nan() -> None:
    batch = torch.zeros(2, 3, 101, 101)
    batch[:, 1] = float("nan")  # a band with no coverage at all
    batch[:, 2] = torch.randn(2, 101, 101)
    got = preprocess(batch, PreprocessSpec())
    assert torch.isfinite(got).all()
    assert (got[:, :2] == 0).all()


def test_float16_input_is_promoted() -> None:
    batch = torch.randn(3, 3, 101, 101)
    got16 = preprocess(batch.half(), PreprocessSpec())
    got32 = preprocess(batch.half().float(), PreprocessSpec())
    assert got16.dtype == torch.float32
    torch.testing.assert_close(got16, got32)


def test_spec_json_round_trip_and_overrides() -> None:
    spec = PreprocessSpec.for_annulus(ANNULUS_GEN5, clip_range=20.0)
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    assert spec.with_overrides(clip_range=50.0, annulus_r_in=None).clip_range == 50.0
    assert spec.with_overrides(clip_range=50.0).annulus_r_in == 32.5


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (
            {"annulus_r_in": 40.0, "annulus_r_out": 30.0},
            "annulus_r_out (30.0) must exceed annulus_r_in (40.0)",
        ),
        ({"clip_range": 0.0}, "clip_range"),
        ({"annulus_r_in": -1.0}, "annulus_r_in"),
        ({"kind": "zscore"}, "unknown preprocessing kind 'zscore'"),
        ({"clip": 10.0}, "clip"),
    ],
)
def test_bad_spec_is_refused_naming_the_key(fields: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        PreprocessSpec.model_validate(fields)


def test_bad_batches_are_refused() -> None:
    with pytest.raises(PreprocessError, match=r"\(N, C, H, W\) batch, got shape \(3, 101, 101\)"):
        preprocess(torch.zeros(3, 101, 101), PreprocessSpec())
    with pytest.raises(PreprocessError, match="floating-point"):
        preprocess(torch.zeros(1, 3, 101, 101, dtype=torch.int32), PreprocessSpec())
    with pytest.raises(PreprocessError, match="holds no pixel"):
        preprocess(torch.zeros(1, 3, 21, 21), PreprocessSpec(annulus_r_in=20.0, annulus_r_out=32.0))
    with pytest.raises(PreprocessError, match=r"torch\.Tensor"):
        preprocess(np.zeros((1, 3, 101, 101)), PreprocessSpec())  # type: ignore[arg-type]


# --- the team's definitions, transcribed from dhs/preprocess.py and dhs/utils.py ----------


def team_radius(h: int, w: int) -> np.ndarray:
    y, x = np.ogrid[:h, :w]
    return np.sqrt((x - w // 2) ** 2 + (y - h // 2) ** 2)


def team_normalise(img: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    r = team_radius(*img.shape)
    values = img[(r >= r_in) & (r < r_out)]
    median = np.nanmedian(values)
    mad = np.nanmedian(np.abs(values - median)) + 1e-8
    return (img - median) / mad


def team_profile_model(img: np.ndarray, r_max: int = 32) -> np.ndarray:
    r = team_radius(*img.shape)
    profile = np.array([np.median(img[(r >= k) & (r < k + 1)]) for k in range(r_max)])
    return profile[np.clip(np.floor(r).astype(int), 0, r_max - 1)]


def team_preprocess(
    cube: np.ndarray, mode: str, annulus: tuple[float, float], crop: int | None
) -> np.ndarray:
    if crop is not None:
        top = (cube.shape[-1] - crop) // 2
        cube = cube[:, top : top + crop, top : top + crop]
    out = []
    for band in cube.astype(np.float64):
        x = np.where(np.isnan(band), 0.0, band)
        x = team_normalise(x, *annulus)
        if mode == "residual_radial_profile":
            x = x - team_profile_model(x)
        out.append(np.clip(x, -10.0, 10.0))
    return np.stack(out)


@pytest.mark.parametrize("mode", ["raw_robust", "residual_radial_profile"])
@pytest.mark.parametrize(
    ("annulus", "crop"), [(ANNULUS_GEN1_4, None), (ANNULUS_GEN5, None), (ANNULUS_GEN1_4, 64)]
)
def test_matches_the_team_definitions_on_real_cutouts(
    real_batch: np.ndarray, mode: str, annulus: tuple[float, float], crop: int | None
) -> None:
    spec = PreprocessSpec(kind=mode, annulus_r_in=annulus[0], annulus_r_out=annulus[1], crop_size=crop)
    got = preprocess(torch.from_numpy(real_batch), spec).numpy()
    size = crop or 101
    assert got.shape == (6, 3, size, size) and spec.output_shape((3, 101, 101)) == (3, size, size)
    for i, cube in enumerate(real_batch):
        expected = team_preprocess(cube, mode, annulus, crop)
        # The team divided by MAD + 1e-8 (lenscal: by MAD): 1e-8 / MAD ~ 1e-5 of each value.
        np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-4)


def test_crop_keeps_the_cutout_centre_pixel() -> None:
    batch = torch.zeros(1, 3, 101, 101)
    batch[0, :, 50, 50] = 1.0
    cropped = preprocess(batch, PreprocessSpec(crop_size=64, annulus_r_in=20, annulus_r_out=30))
    assert cropped.shape == (1, 3, 64, 64) and float(cropped[0, 0, 32, 32]) == 10.0  # clipped spike
    with pytest.raises(PreprocessError, match="crop_size 128 is larger than the 101x101 cutout"):
        preprocess(batch, PreprocessSpec(crop_size=128))
