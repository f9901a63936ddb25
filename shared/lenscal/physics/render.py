"""Batched arc rendering: ray-shoot an oversampled pixel grid through SIE + shear, evaluate
the source, integrate over each pixel, convolve each band with its PSF (FFT), optionally
add Poisson noise from the arc's own flux. CPU and CUDA; chunks bound the memory.

Pixel grid (docs/science.md): array index ``[..., row, col]``; ``x = (col - c) s``,
``y = (row - c) s``, ``c = (size - 1) / 2``; sub-pixel centres on a ``k x k`` grid per
pixel. A pixel's value is the mean surface brightness of its sub-pixels times the pixel
area (nmgy: the pixel integral), then convolved with the optical PSF sampled at pixel
offsets (lenscal.physics.psf): the pixel response is counted once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lenscal.physics.lens import ray_shoot
from lenscal.physics.params import ArcParams, PhysicsError, flux_nmgy
from lenscal.physics.psf import kernel_half_width, psf_kernels
from lenscal.physics.source import gaussian_clumps_sb, sersic_b, sersic_sb
from lenscal.rng import noise_seed
from lenscal.survey import CUTOUT_SIZE, PIXEL_SCALE_ARCSEC

#: Bounds that keep one render's memory and time proportional to what it produces.
MAX_SUBGRID_SIDE = 4096  # size x oversample, sub-pixels per side
MAX_KERNEL_SIDE = 257  # PSF kernel pixels per side (a 99.9%-flux Moffat of beta ~2.3 at 3")
GAIN_RANGE = (1e-3, 1e13)  # e-/nmgy; 1e12 is the team's "no noise" check, inf is noiseless


class RenderSpec(BaseModel):
    """How arcs are rendered. Units: pixel_scale arcsec/px; poisson_gain e-/nmgy.

    Bounded so that no setting asks for unbounded work: size x oversample <= 4096 sub-pixels,
    a PSF kernel (at max_psf_fwhm, covering 99.9% of the flux) <= 257 px wide, which refuses
    Moffat beta below ~2.3 at FWHM 3 arcsec, and poisson_gain within [1e-3, 1e13] (or inf)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(CUTOUT_SIZE, ge=8, le=1024, description="stamp side, px")
    pixel_scale: float = Field(PIXEL_SCALE_ARCSEC, gt=0, description="arcsec per pixel")
    oversample: int = Field(4, ge=1, le=32, description="sub-pixels per pixel side")
    psf: Literal["gaussian", "moffat"] = "gaussian"
    moffat_beta: float = Field(3.5, gt=1.0, description="Moffat beta")
    poisson_gain: float | None = Field(None, gt=0, description="e-/nmgy; None or inf = noiseless")
    noise_seed: int = Field(0, ge=0, description="base seed of the per-injection noise generators")
    dtype: Literal["float32", "float64"] = "float32"
    chunk_size: int = Field(32, ge=1, description="injections per device batch")
    max_psf_fwhm: float = Field(
        3.0, gt=0, description="largest PSF FWHM accepted, arcsec; fixes the kernel and FFT sizes"
    )
    cpu_tile: int = Field(2, ge=1, description="injections ray-shot together on CPU (cache-sized)")
    #: FFT round-off below this fraction of a stamp's peak is set to exactly zero, so
    #: empty pixels stay empty (and get no Poisson noise).
    zero_floor: float = Field(1e-7, ge=0, lt=1e-3)

    @model_validator(mode="after")
    def _bounded(self) -> RenderSpec:
        side = self.size * self.oversample
        if side > MAX_SUBGRID_SIDE:
            raise ValueError(
                f"size x oversample = {self.size} x {self.oversample} = {side} sub-pixels per side "
                f"exceeds {MAX_SUBGRID_SIDE}; lower oversample or the stamp size"
            )
        if self.poisson_gain is not None and math.isfinite(self.poisson_gain):
            low, high = GAIN_RANGE
            if not low <= self.poisson_gain <= high:
                raise ValueError(
                    f"poisson_gain {self.poisson_gain:g} e-/nmgy is outside [{low:g}, {high:g}] "
                    "(inf: noiseless)"
                )
        kernel = 2 * kernel_half_width(self.max_psf_fwhm / self.pixel_scale, self.psf, self.moffat_beta) + 1
        if kernel > MAX_KERNEL_SIDE:
            raise ValueError(
                f"a {self.psf} PSF of beta {self.moffat_beta:g} at FWHM {self.max_psf_fwhm:g} arcsec needs a "
                f"{kernel} px kernel to hold 99.9% of its flux; the limit is {MAX_KERNEL_SIDE} px "
                "(raise moffat_beta or lower max_psf_fwhm)"
            )
        return self


@dataclass
class RenderResult:
    arcs: torch.Tensor  # (N, 3, H, W) float32 nmgy
    magnification: torch.Tensor  # (N,) lensed / unlensed flux inside the stamp, before PSF
    #: (N,) flux the team's clump model adds inside the stamp, before PSF, per unit unlensed
    #: flux (0 for rows without it: Gaussian clumps conserve flux).
    clump_added: torch.Tensor | None = None


def pixel_grid(
    size: int,
    pixel_scale: float,
    oversample: int,
    device: torch.device | str,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel centre coordinates (x, y) in arcsec, each (size*k, size*k)."""
    c = (size - 1) / 2.0
    offsets = (torch.arange(oversample, dtype=dtype, device=device) + 0.5) / oversample - 0.5
    pos = (torch.arange(size, dtype=dtype, device=device).reshape(-1, 1) + offsets.reshape(1, -1)).reshape(-1)
    coord = (pos - c) * pixel_scale
    y, x = torch.meshgrid(coord, coord, indexing="ij")
    return x, y


def render_arcs(
    params: ArcParams,
    spec: RenderSpec | None = None,
    *,
    device: str | torch.device | None = None,
    noise_keys: Sequence[int] | None = None,
) -> torch.Tensor:
    """(N, 3, H, W) float32 arcs in nanomaggies per pixel."""
    return render_arcs_with_truth(params, spec, device=device, noise_keys=noise_keys).arcs


def render_arcs_with_truth(
    params: ArcParams,
    spec: RenderSpec | None = None,
    *,
    device: str | torch.device | None = None,
    noise_keys: Sequence[int] | None = None,
) -> RenderResult:
    spec = spec or RenderSpec()
    dev = torch.device(device) if device is not None else params.theta_e.device
    params = params.to(dev)
    params.validate()
    n = len(params)
    if noise_keys is not None and len(noise_keys) != n:
        raise PhysicsError(f"noise_keys has {len(noise_keys)} entries for {n} injections")
    dtype = torch.float32 if spec.dtype == "float32" else torch.float64
    gx, gy = pixel_grid(spec.size, spec.pixel_scale, spec.oversample, dev, dtype)
    arcs = torch.empty((n, 3, spec.size, spec.size), dtype=torch.float32, device=dev)
    magnification = torch.empty(n, dtype=torch.float64, device=dev)
    clump_added = torch.zeros(n, dtype=torch.float64, device=dev)
    for start in range(0, n, spec.chunk_size):
        stop = min(start + spec.chunk_size, n)
        unit, mu, added = _lensed_unit_images_tiled(params.slice(start, stop), gx, gy, spec, dtype)
        flux = flux_nmgy(params.mags()[start:stop]).to(dtype)  # (n, 3)
        images = unit.unsqueeze(1) * flux[:, :, None, None]
        images = convolve_psf(images, params.psf_fwhm()[start:stop], spec)
        peak = images.amax(dim=(-2, -1), keepdim=True)
        images = torch.where(
            images > spec.zero_floor * peak, images, torch.zeros((), dtype=dtype, device=dev)
        )
        if spec.poisson_gain is not None and math.isfinite(spec.poisson_gain):
            keys = (
                noise_keys[start:stop]
                if noise_keys is not None
                else [noise_seed(spec.noise_seed, i) for i in range(start, stop)]
            )
            images = poisson_arcs(images, spec.poisson_gain, keys)
        arcs[start:stop] = images.to(torch.float32)
        magnification[start:stop] = mu
        clump_added[start:stop] = added
    return RenderResult(arcs=arcs, magnification=magnification, clump_added=clump_added)


def _col(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).reshape(-1, 1, 1)


def _source_plane(
    p: ArcParams, gx: torch.Tensor, gy: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-plane positions (arcsec) of image-plane grid points, one grid per injection."""
    return ray_shoot(
        gx,
        gy,
        _col(p.theta_e, dtype),
        _col(p.q_lens, dtype),
        _col(p.phi_lens, dtype),
        _col(p.lens_x, dtype),
        _col(p.lens_y, dtype),
        _col(p.gamma1, dtype),
        _col(p.gamma2, dtype),
    )


def _lensed_unit_images(
    p: ArcParams, gx: torch.Tensor, gy: torch.Tensor, spec: RenderSpec, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lensed source of unit unlensed flux, binned to pixels (n, H, W), its total (the
    magnification inside the stamp) and the flux the team's clump model added (n,)."""

    def col(t: torch.Tensor) -> torch.Tensor:
        return _col(t, dtype)

    bx, by = _source_plane(p, gx, gy, dtype)
    team = p.team_clump_rows()
    gaussian = (~team).to(torch.float64)  # rows whose clumps are flux-conserving Gaussians
    clump_fraction = (
        p.clumps[..., 3].sum(-1) * gaussian if p.clumps is not None else torch.zeros_like(p.theta_e)
    )
    b = sersic_b(p.n_sersic)
    sb = sersic_sb(
        bx,
        by,
        col(1.0 - clump_fraction),
        col(p.r_e),
        col(p.n_sersic),
        col(p.q_src),
        col(p.phi_src),
        col(p.src_x),
        col(p.src_y),
        b=col(b),
    )
    if p.clumps is not None and bool(gaussian.any()):
        sb = sb + gaussian_clumps_sb(
            bx,
            by,
            p.clumps.to(dtype),
            gaussian.to(dtype),
            p.src_x.to(dtype),
            p.src_y.to(dtype),
        )
    k, size = spec.oversample, spec.size
    binned = sb.reshape(-1, size, k, size, k).mean(dim=(2, 4)) * spec.pixel_scale**2
    added = torch.zeros(len(p), dtype=torch.float64, device=binned.device)
    if bool(team.any()):
        binned, added = _mix_team_clumps(binned, p, spec, dtype)
    return binned, binned.sum(dim=(-2, -1)).double(), added


def _mix_team_clumps(
    unit: torch.Tensor, p: ArcParams, spec: RenderSpec, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The team's ``_add_clumps`` (dhs/injection_engine.py before 2026-02-16) on the rows with
    ``clump_mix`` m > 0, at pixel resolution: C = sum_j w_j exp(-|beta - c_j|^2 / 2 sigma_j^2)
    at each pixel centre's source-plane position beta, scaled to max 1, then
    ``(1 - m) U + m (mean U + std U * C)`` with the stamp's mean and (n - 1) std. Their shape
    was dimensionless and normalised afterwards; the mix is linear and scale-free, so it acts
    the same on the unit-flux image. Returns the images and the flux each row gained."""
    assert p.clumps is not None and p.clump_mix is not None
    team = p.team_clump_rows()
    px, py = pixel_grid(spec.size, spec.pixel_scale, 1, unit.device, dtype)
    rows = torch.nonzero(team).reshape(-1)
    sub = p.take(rows)
    bx, by = _source_plane(sub, px, py, dtype)
    clumps = p.clumps[rows].to(dtype)
    c = torch.zeros_like(bx)
    for j in range(clumps.shape[1]):
        cx = (sub.src_x.to(dtype) + clumps[:, j, 0]).reshape(-1, 1, 1)
        cy = (sub.src_y.to(dtype) + clumps[:, j, 1]).reshape(-1, 1, 1)
        sigma2 = (clumps[:, j, 2] ** 2).reshape(-1, 1, 1)
        weight = clumps[:, j, 3].reshape(-1, 1, 1)
        c = c + weight * torch.exp(-((bx - cx) ** 2 + (by - cy) ** 2) / (2 * sigma2 + 1e-12))
    c = c / (c.amax(dim=(-2, -1), keepdim=True) + 1e-8)
    base = unit[rows]
    m = p.clump_mix[rows].to(dtype).reshape(-1, 1, 1)
    mean = base.mean(dim=(-2, -1), keepdim=True)
    std = base.std(dim=(-2, -1), keepdim=True)  # unbiased, as torch's default in their code
    mixed = (1.0 - m) * base + m * (mean + std * c)
    out = unit.clone()
    out[rows] = mixed
    added = torch.zeros(len(p), dtype=torch.float64, device=unit.device)
    added[rows] = (mixed - base).sum(dim=(-2, -1)).double()
    return out, added


def _lensed_unit_images_tiled(
    p: ArcParams, gx: torch.Tensor, gy: torch.Tensor, spec: RenderSpec, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On CPU, a few injections at a time keep the per-sub-pixel temporaries in cache
    (measured 2x faster than a whole chunk); a GPU takes the chunk at once."""
    tile = len(p) if gx.device.type != "cpu" else spec.cpu_tile
    parts = [_lensed_unit_images(p.slice(s, s + tile), gx, gy, spec, dtype) for s in range(0, len(p), tile)]
    return tuple(torch.cat([part[i] for part in parts]) for i in range(3))  # type: ignore[return-value]


def convolve_psf(images: torch.Tensor, fwhm_arcsec: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
    """Per-injection, per-band FFT convolution, zero-padded ('same' output, like
    scipy.signal.fftconvolve)."""
    if float(fwhm_arcsec.max()) > spec.max_psf_fwhm:
        raise PhysicsError(
            f"PSF FWHM {float(fwhm_arcsec.max()):.3f} arcsec exceeds RenderSpec.max_psf_fwhm="
            f"{spec.max_psf_fwhm}; raise it"
        )
    fwhm_px = fwhm_arcsec / spec.pixel_scale
    # Kernel array and FFT sizes come from the spec, not the batch: an injection renders to
    # the same bits alone or in any batch.
    half = kernel_half_width(spec.max_psf_fwhm / spec.pixel_scale, spec.psf, spec.moffat_beta)
    kernels = psf_kernels(fwhm_px, half, spec.psf, spec.moffat_beta).to(images.dtype)
    size, ksize = images.shape[-1], 2 * half + 1
    full = _fast_fft_size(size + ksize - 1)  # zero padding beyond the linear size changes nothing
    spectrum = torch.fft.rfft2(images, s=(full, full)) * torch.fft.rfft2(kernels, s=(full, full))
    out = torch.fft.irfft2(spectrum, s=(full, full))
    return out[..., half : half + size, half : half + size]


def _fast_fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a prime length such as 127 is several times slower)."""
    best = 2 * n
    p2 = 1
    while p2 < best:
        p3 = p2
        while p3 < best:
            p5 = p3
            while p5 < n:
                p5 *= 5
            best = min(best, p5)
            p3 *= 3
        p2 *= 2
    return best


def poisson_arcs(images: torch.Tensor, gain: float, keys: Sequence[int]) -> torch.Tensor:
    """``poisson(arc * gain) / gain`` per injection, each from its own seeded generator.
    Pixels with zero flux stay exactly zero."""
    out = torch.empty_like(images)
    for i, key in enumerate(keys):
        generator = torch.Generator(device=images.device)
        generator.manual_seed(int(key))
        rate = (images[i] * gain).clamp_min(0.0)
        out[i] = torch.poisson(rate, generator=generator) / gain
    return out
