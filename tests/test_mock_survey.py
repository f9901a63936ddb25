"""The mock survey: deterministic bytes, the team's schema, DR10-like noise, honest labels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lenscal.data.cutouts import read_cutout
from lenscal.data.manifest import TEAM_COLUMNS, TRACTOR_COLUMNS, read_manifest
from lenscal.data.splits import check_splits
from lenscal.injection import host_pool
from lenscal.mock import make_mock_survey

# Outer-ring (r >= 45 px) robust sigma of the real DR10 cutouts, nmgy (docs/science.md, "Survey conventions").
REAL_SIGMA = {"g": (0.0012, 0.0027), "r": (0.0023, 0.0050), "z": (0.0052, 0.0115)}


def digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("mock")
    make_mock_survey(out, n=200, seed=3, positive_fraction=0.15, progress=False)
    return out, read_manifest(out / "manifest.parquet", required=("galaxy_id", "cutout_path"))


def test_same_seed_same_bytes_and_objects_independent_of_n(tmp_path: Path) -> None:
    make_mock_survey(tmp_path / "a", n=30, seed=11, positive_fraction=0.3, progress=False)
    make_mock_survey(tmp_path / "b", n=30, seed=11, positive_fraction=0.3, progress=False)
    make_mock_survey(tmp_path / "c", n=30, seed=12, positive_fraction=0.3, progress=False)
    make_mock_survey(tmp_path / "d", n=70, seed=11, positive_fraction=0.3, progress=False)
    a, b, c, d = (digests(tmp_path / x) for x in "abcd")
    assert a == b
    assert {k for k in a if k.startswith("cutouts/")}.isdisjoint({k for k, v in c.items() if a.get(k) == v})
    shared = [k for k in a if k.startswith("cutouts/")]
    assert all(a[k] == d[k] for k in shared)  # object i does not depend on n


def test_manifest_has_team_and_tractor_columns(survey: tuple[Path, pd.DataFrame]) -> None:
    out, manifest = survey
    assert len(manifest) == 200
    for column in [c.name for c in TEAM_COLUMNS] + [c.name for c in TRACTOR_COLUMNS]:
        assert column in manifest.columns, column
    assert set(manifest["type"]) <= {"SER", "DEV", "REX", "EXP"}
    for path in manifest.cutout_path.head(10):
        assert read_cutout(out / path).shape == (3, 101, 101)
    assert check_splits(manifest).ok
    assert (out / "gallery.png").read_bytes()[:4] == b"\x89PNG"


def test_labels_pools_and_tiers_are_consistent(survey: tuple[Path, pd.DataFrame]) -> None:
    _, m = survey
    positives = m[m.label == 1]
    assert (positives.pool == "pos").all() and set(positives.tier) <= {"A", "B"}
    assert positives.tier.isin(["A"]).any() and positives.tier.isin(["B"]).any()
    assert m[m.label == 0].tier.isna().all()
    assert 0.08 < m.label.mean() < 0.23
    n2 = m[m.pool == "N2"]
    assert set(n2.confuser_category) <= {"ring", "spiral", "merger"} and len(n2) > 5
    assert m[m.pool != "N2"].confuser_category.isna().all()
    assert (positives.type == "DEV").all()
    assert len(host_pool(m, "IM2")) > 0 and len(host_pool(m, "IM1")) > 20


def test_outer_ring_noise_matches_real_dr10(survey: tuple[Path, pd.DataFrame]) -> None:
    out, manifest = survey
    yy, xx = np.mgrid[0:101, 0:101]
    outer = np.hypot(yy - 50, xx - 50) >= 45
    sigmas = []
    for path in manifest.cutout_path:
        cutout = read_cutout(out / path)
        row = []
        for band in range(3):
            values = cutout[band][outer]
            values = values[np.isfinite(values)]
            row.append(1.4826 * np.median(np.abs(values - np.median(values))))
        sigmas.append(row)
    sig = np.array(sigmas)
    for b, band in enumerate("grz"):
        lo, hi = REAL_SIGMA[band]
        assert lo <= np.median(sig[:, b]) <= hi, band
        assert lo * 0.8 <= np.percentile(sig[:, b], 5) and np.percentile(sig[:, b], 95) <= hi * 1.25, band


def test_nan_masks_are_present_and_counted(tmp_path: Path) -> None:
    make_mock_survey(tmp_path, n=120, seed=5, progress=False)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    nan_cutouts = sum(bool(np.isnan(read_cutout(tmp_path / p)).any()) for p in manifest.cutout_path)
    assert 1 <= nan_cutouts <= 12


def test_depth_columns_and_pixel_noise_agree() -> None:
    """A point source's PSF-weighted flux measured on the mock's noise has the variance
    1 / psfdepth that the depth columns state (the formula of lenscal.survey)."""
    from lenscal.mock.images import _add_noise
    from lenscal.survey import psf_sigma_pixels

    n = 400
    catalog = pd.DataFrame(
        {
            "galaxy_id": [f"noise_{i}" for i in range(n)],
            **{f"psfsize_{b}": np.full(n, fwhm) for b, fwhm in zip("grz", (1.3, 1.2, 1.0), strict=True)},
            **{f"psfdepth_{b}": np.full(n, depth) for b, depth in zip("grz", (3e3, 1e3, 2e2), strict=True)},
        }
    )
    images = torch.zeros((n, 3, 101, 101))
    _add_noise(images, catalog, seed=0)
    rows, cols = np.mgrid[0:101, 0:101]
    for b, band in enumerate("grz"):
        sigma = psf_sigma_pixels(float(catalog[f"psfsize_{band}"][0]))
        psf = np.exp(-((rows - 50) ** 2 + (cols - 50) ** 2) / (2 * sigma**2))
        psf /= psf.sum()
        flux = (images[:, b].numpy() * psf).sum(axis=(1, 2)) / (psf**2).sum()  # PSF-weighted estimate
        assert flux.var() == pytest.approx(1 / float(catalog[f"psfdepth_{band}"][0]), rel=0.15), band


def test_the_demo_lens_prior_draws_brighter_sources_on_the_same_objects(tmp_path: Path) -> None:
    from lenscal.mock.images import DEMO_LENS_PRIOR, REAL_LENS_PRIOR

    make_mock_survey(tmp_path / "default", n=40, seed=5, positive_fraction=0.5, progress=False)
    make_mock_survey(
        tmp_path / "demo", n=40, seed=5, positive_fraction=0.5, progress=False, lens_prior=DEMO_LENS_PRIOR
    )
    default = read_manifest(tmp_path / "default" / "manifest.parquet").set_index("galaxy_id")
    demo = read_manifest(tmp_path / "demo" / "manifest.parquet").set_index("galaxy_id")
    assert (default.label == demo.label).all()  # same objects, same lenses: only the sources differ
    lenses = default.index[default.label == 1]
    low, high = REAL_LENS_PRIOR.source_params.r_mag_range
    assert default.loc[lenses, "lens_mag_r"].between(low, high).all()
    low, high = DEMO_LENS_PRIOR.source_params.r_mag_range
    assert demo.loc[lenses, "lens_mag_r"].between(low, high).all()
    assert (demo.loc[lenses, "lens_mag_r"] < default.loc[lenses, "lens_mag_r"]).mean() > 0.8
    assert demo.loc[lenses, "arc_snr_r"].median() > default.loc[lenses, "arc_snr_r"].median()
    negatives = default.index[default.label == 0]
    for gid in negatives:  # the negatives are the same bytes
        path = default.loc[gid, "cutout_path"]
        assert (tmp_path / "default" / path).read_bytes() == (tmp_path / "demo" / path).read_bytes()
