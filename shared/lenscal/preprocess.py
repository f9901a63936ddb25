"""The one normalisation in lenscal. Trainer, scorer and diagnostics all call ``preprocess``;
the ``PreprocessSpec`` travels inside every checkpoint bundle so they cannot drift apart.

0. ``crop_size`` (when set): the central ``crop_size x crop_size`` pixels are kept first,
   as the team's loader did (its default: 64 px unless a config said ``crop: false``);
   everything below then works on the crop.

``raw_robust`` (the team's normalisation), per cutout and per band:
1. NaN pixels -> 0 (masked / uncovered pixels count as empty sky);
2. median ``m`` and MAD ``s = median(|x - m|)`` (unscaled: no 1.4826 factor, as the team
   trained) over the annulus ``annulus_r_in <= r < annulus_r_out``, where ``r`` is the
   distance in pixels from the centre pixel ``(H // 2, W // 2)`` (the cutout's centre, also
   after a centred crop to an even size); the median of an even number of values is the
   mean of the two middle ones (numpy's convention);
3. ``(x - m) / max(s, mad_floor)`` (the floor only matters for a blank band: all zeros);
4. clip to ``[-clip_range, +clip_range]``.

Annulus (20, 32) px was used for gen1-gen4, (32.5, 45) px from gen5 on.

``residual_radial_profile`` (the team's R5/R6 shortcut experiments, as their
``preprocess_stack`` computed it): steps 1-3 of ``raw_robust``; then each band's azimuthal
median profile of the normalised image, in rings ``k <= r < k + 1`` for k = 0..31, is
subtracted (pixels beyond r = 32 take ring 31's median), removing the smooth host light
while keeping azimuthally localised features such as arcs; then step 4.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from lenscal.errors import PreprocessError
from lenscal.preprocess_spec import (
    ANNULUS_GEN1_4,
    ANNULUS_GEN5,
    KINDS,
    PROFILE_RINGS,
    TEAM_CROP_SIZE,
    PreprocessOverride,
    PreprocessSpec,
)

__all__ = [
    "ANNULUS_GEN1_4",
    "ANNULUS_GEN5",
    "PREPROCESSORS",
    "TEAM_CROP_SIZE",
    "PreprocessOverride",
    "PreprocessSpec",
    "annulus_indices",
    "centre_crop",
    "preprocess",
    "radius_map",
]


def preprocess(batch: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """Normalise a (N, C, H, W) batch of raw cutouts (nmgy) on its own device; returns float32."""
    if not isinstance(batch, torch.Tensor):
        raise PreprocessError(f"preprocess expects a torch.Tensor, got {type(batch).__name__}")
    if batch.ndim != 4:
        raise PreprocessError(f"preprocess expects a (N, C, H, W) batch, got shape {tuple(batch.shape)}")
    if not batch.is_floating_point():
        raise PreprocessError(f"preprocess expects floating-point nanomaggies, got {batch.dtype}")
    if spec.crop_size is not None:
        batch = centre_crop(batch, spec.crop_size)
    return PREPROCESSORS[spec.kind](batch.to(torch.float32), spec)


def centre_crop(batch: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size pixels (start (H - size) // 2, as the team's center_crop)."""
    h, w = batch.shape[-2:]
    if h < size or w < size:
        raise PreprocessError(f"crop_size {size} is larger than the {h}x{w} cutout")
    top, left = (h - size) // 2, (w - size) // 2
    return batch[..., top : top + size, left : left + size]


def radius_map(height: int, width: int) -> torch.Tensor:
    """(H, W) float64 distance in pixels from the centre pixel (H // 2, W // 2)."""
    rows = torch.arange(height, dtype=torch.float64) - height // 2
    cols = torch.arange(width, dtype=torch.float64) - width // 2
    # sqrt of a sum of integer squares (exact in float64): correctly rounded like hypot, and
    # an operator ONNX has, as the radii are traced into model.raw.onnx as constants.
    return torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)


def annulus_indices(height: int, width: int, r_in: float, r_out: float, device: torch.device) -> torch.Tensor:
    """Flat pixel indices with r_in <= r < r_out about the centre pixel (H // 2, W // 2)."""
    return _annulus_indices(height, width, float(r_in), float(r_out), str(device))


@functools.lru_cache(maxsize=64)
def _annulus_indices(height: int, width: int, r_in: float, r_out: float, device: str) -> torch.Tensor:
    r = radius_map(height, width).reshape(-1)
    idx = torch.nonzero((r >= r_in) & (r < r_out)).reshape(-1)
    if idx.numel() == 0:
        raise PreprocessError(f"annulus [{r_in}, {r_out}) px holds no pixel of a {height}x{width} cutout")
    return idx.to(device)


def _median_last(values: torch.Tensor) -> torch.Tensor:
    """Median over the last axis; for an even count the mean of the two middle values.

    Selection by topk, not a full sort (~5x faster on CPU for annulus-sized rows), and an
    operator ONNX has (TopK), so this same code is traced into a bundle's model.raw.onnx.
    """
    k = values.shape[-1]
    smallest = values.topk(k // 2 + 1, dim=-1, largest=False, sorted=False).values
    if k % 2:
        return smallest.amax(dim=-1)  # the ((k + 1) / 2)-th smallest
    middle = smallest.topk(2, dim=-1).values  # the (k/2+1)-th and (k/2)-th smallest
    return (middle[..., 0] + middle[..., 1]) / 2


def _normalise(batch: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """Steps 1-3: NaN -> 0, then (x - median) / MAD over the annulus (a new tensor)."""
    # NaN -> 0 only; +-inf stay infinite and end up at the clip bounds.
    x = torch.nan_to_num(batch, nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    if x is batch:
        x = x.clone()
    n, c, h, w = x.shape
    idx = annulus_indices(h, w, spec.annulus_r_in, spec.annulus_r_out, x.device)
    ring = x.reshape(n, c, h * w).index_select(2, idx)
    median = _median_last(ring)
    mad = _median_last((ring - median[..., None]).abs())
    scale = mad.clamp_min(spec.mad_floor)
    # In place on our own copy: one allocation for the whole batch.
    return x.sub_(median[..., None, None]).div_(scale[..., None, None])


def _raw_robust(batch: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    return _normalise(batch, spec).clamp_(-spec.clip_range, spec.clip_range)


@functools.lru_cache(maxsize=16)
def _profile_rings(height: int, width: int, device: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """(flat pixel indices of each ring k <= r < k + 1, k < PROFILE_RINGS; the ring each
    pixel takes its model value from, floor(r) capped at the last ring)."""
    floor_r = torch.floor(radius_map(height, width)).reshape(-1).long()
    rings = tuple(torch.nonzero(floor_r == k).reshape(-1).to(device) for k in range(PROFILE_RINGS))
    if any(r.numel() == 0 for r in rings):
        raise PreprocessError(f"a {height}x{width} cutout is too small for {PROFILE_RINGS} profile rings")
    return rings, floor_r.clamp_max(PROFILE_RINGS - 1).to(device)


def _residual_radial_profile(batch: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    x = _normalise(batch, spec)
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    rings, ring_of_pixel = _profile_rings(h, w, str(x.device))
    profile = torch.stack([_median_last(flat.index_select(2, idx)) for idx in rings], dim=-1)
    residual = flat - profile.index_select(2, ring_of_pixel)
    return residual.reshape(n, c, h, w).clamp_(-spec.clip_range, spec.clip_range)


#: Normalisation registry: kind name -> function(batch float32 (N,C,H,W), spec) -> tensor.
PREPROCESSORS: dict[str, Callable[[torch.Tensor, PreprocessSpec], torch.Tensor]] = {
    "raw_robust": _raw_robust,
    "residual_radial_profile": _residual_radial_profile,
}
assert tuple(PREPROCESSORS) == KINDS, "a normalisation without a name in KINDS (or the reverse)"
