"""`make demo`: the pipeline that exists so far, on embedded defaults (no external data).

Until the mock survey lands (issue "Physics, injector service and mock survey"), the sample
is a toy: exponential-profile galaxies with a Gaussian PSF and per-pixel noise from the
DR10 depth formula, written as Legacy-Survey FITS cubes. The demo then packs them into
float16 shards, assigns 70/15/15 HEALPix splits, checks them, and normalises a batch with
the gen5 PreprocessSpec, saving a gallery PNG of raw and normalised cutouts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.survey import BANDS, CUTOUT_SIZE, PIXEL_SCALE_ARCSEC, pixel_noise_sigma, psfdepth_from_m5


def toy_sample(out: Path, n: int, seed: int) -> Path:
    """Write n toy FITS cutouts and a manifest; returns the manifest path."""
    from lenscal.data.cutouts import write_cutout_fits
    from lenscal.data.manifest import write_manifest

    rng = np.random.default_rng(seed)
    (out / "cutouts").mkdir(parents=True, exist_ok=True)
    size = CUTOUT_SIZE
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        ra, dec = float(rng.uniform(148.0, 152.0)), float(rng.uniform(0.0, 4.0))
        psf_r = float(rng.uniform(0.9, 1.8))  # arcsec FWHM
        m5_r = float(rng.uniform(22.5, 24.5))
        r_e = float(rng.uniform(0.5, 2.0)) / PIXEL_SCALE_ARCSEC  # px
        q, pa = float(rng.uniform(0.4, 1.0)), float(rng.uniform(0, np.pi))
        flux_r = 10 ** (-0.4 * (float(rng.uniform(18.0, 21.0)) - 22.5))
        colours = {"g": 10 ** (-0.4 * 1.2), "r": 1.0, "z": 10 ** (0.4 * 0.8)}
        psf_scale = {"g": 1.05, "r": 1.0, "z": 0.94}
        dx, dy = xx - c, yy - c
        xp = dx * np.cos(pa) + dy * np.sin(pa)
        yp = -dx * np.sin(pa) + dy * np.cos(pa)
        # Exponential disc: I ~ exp(-1.678 R / R_e), seeing folded in as a quadrature blur.
        seeing_px = psf_r / 2.3548 / PIXEL_SCALE_ARCSEC
        radius = np.sqrt(xp**2 * q + yp**2 / q + seeing_px**2)
        profile = np.exp(-1.678 * radius / r_e)
        profile /= profile.sum()
        cube = np.empty((3, size, size), dtype=np.float32)
        for b, band in enumerate(BANDS):
            sigma = pixel_noise_sigma(psfdepth_from_m5(m5_r), psf_r * psf_scale[band])
            cube[b] = flux_r * colours[band] * profile + rng.normal(0.0, sigma, (size, size))
        if rng.random() < 0.05:  # a masked edge strip, as real cutouts near survey edges have
            cube[:, :, : int(rng.integers(3, 15))] = np.nan
        path = out / "cutouts" / f"toy_{i:05d}.fits"
        write_cutout_fits(path, cube, ra=ra, dec=dec)
        rows.append(
            {
                "galaxy_id": f"toy_{i:05d}",
                "cutout_path": str(path.relative_to(out)),
                "ra": ra,
                "dec": dec,
                "psfsize_r": psf_r,
                "psfdepth_r": psfdepth_from_m5(m5_r),
                "label": 0,
                "pool": "N1",
                "type": "EXP",
            }
        )
    manifest = out / "manifest.parquet"
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest


def run_demo(out: Path, *, n: int = 300, seed: int = 0, progress: bool | None = None) -> dict[str, Any]:
    import torch

    from lenscal.data.ingest import ingest
    from lenscal.data.manifest import read_manifest, write_manifest
    from lenscal.data.shards import ShardReader
    from lenscal.data.splits import assign_splits, check_splits, healpix_index
    from lenscal.preprocess import ANNULUS_GEN5, PreprocessSpec, preprocess

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = toy_sample(out, n, seed)
    t_sample = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = ingest(manifest, out / "shards", dtype="float16", shard_size=128, progress=progress)
    t_ingest = time.perf_counter() - t0

    df = read_manifest(out / "shards" / "manifest.parquet")
    df["healpix_128"] = healpix_index(df["ra"].to_numpy(), df["dec"].to_numpy())
    df["split"] = assign_splits(df["ra"].to_numpy(), df["dec"].to_numpy(), "70_15_15", seed=42)
    write_manifest(df, out / "manifest_split.parquet")
    check = check_splits(df)

    reader = ShardReader(out / "shards")
    batch = torch.from_numpy(reader.read(np.arange(min(16, len(reader)))))
    spec = PreprocessSpec.for_annulus(ANNULUS_GEN5)
    normed = preprocess(batch, spec)
    gallery = _gallery(batch.numpy(), normed.numpy(), out / "gallery.png")

    summary = {
        "cutouts": report.rows,
        "shards": report.shards_written + report.shards_reused,
        "storage_dtype": report.dtype,
        "cutouts_with_nan": report.rows_with_nan,
        "split_fractions": {k: round(v, 3) for k, v in check.fractions.items()},
        "split_check": "ok" if check.ok else "LEAK",
        "preprocess_spec": json.loads(spec.to_json()),
        "normalised_batch": {
            "shape": list(normed.shape),
            "min": float(normed.min()),
            "max": float(normed.max()),
        },
        "seconds": {"sample": round(t_sample, 2), "ingest": round(t_ingest, 2)},
        "gallery": str(gallery),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _gallery(raw: np.ndarray, normed: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(8, raw.shape[0])
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.6))
    for i in range(k):
        rgb_raw = _rgb(raw[i])
        axes[0, i].imshow(rgb_raw, origin="lower")
        axes[1, i].imshow(np.clip((normed[i].transpose(1, 2, 0)[..., ::-1] + 3) / 13, 0, 1), origin="lower")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("raw (asinh)")
    axes[1, 0].set_ylabel("preprocessed")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _rgb(chw: np.ndarray) -> np.ndarray:
    """z, r, g -> R, G, B with an asinh stretch (NaN shown black)."""
    img = np.nan_to_num(chw[::-1].transpose(1, 2, 0), nan=0.0)
    scaled = np.arcsinh(img / 0.01) / np.arcsinh(1.0 / 0.01)
    return np.clip(scaled, 0.0, 1.0)
