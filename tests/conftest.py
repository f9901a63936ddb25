"""Shared fixtures. Real data comes from the team kit beside the checkout (../shared)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
TEAM_KIT = Path(os.environ.get("LENSCAL_TEAM_KIT", REPO.parent / "shared"))
REAL_CUTOUTS = TEAM_KIT / "data" / "real_cutouts"
CATALOGS = TEAM_KIT / "data" / "catalogs"
LENSCAL = [sys.executable, "-m", "lenscal.cli"]


@pytest.fixture(scope="session")
def real_cutout_paths() -> list[Path]:
    paths = sorted(REAL_CUTOUTS.glob("*.npz"))
    assert len(paths) == 6, f"expected the six real DR10 cutouts in {REAL_CUTOUTS}, found {len(paths)}"
    return paths


@pytest.fixture()
def real_manifest(tmp_path: Path, real_cutout_paths: list[Path]) -> Path:
    """A manifest over the six real NPZ cutouts, RA/Dec from their own meta keys."""
    rows = []
    for p in real_cutout_paths:
        with np.load(p) as npz:
            rows.append(
                {
                    "galaxy_id": str(npz["meta_galaxy_id"]),
                    "cutout_path": str(p),
                    "ra": float(npz["meta_ra"]),
                    "dec": float(npz["meta_dec"]),
                    "label": 1,
                    "tier": str(npz["meta_tier"]),
                }
            )
    path = tmp_path / "real.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def make_toy_cutouts(directory: Path, n: int, seed: int = 0, fmt: str = "npz") -> Path:
    """n random float32 cutouts (noise + a central blob) and their manifest; returns the manifest."""
    from lenscal.data.cutouts import write_cutout_fits, write_cutout_npz

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:101, 0:101]
    blob = np.exp(-((yy - 50) ** 2 + (xx - 50) ** 2) / 50.0).astype(np.float32)
    rows = []
    for i in range(n):
        cube = rng.normal(0, 0.01, (3, 101, 101)).astype(np.float32) + rng.uniform(0.1, 5) * blob
        path = directory / f"c{i:05d}.{fmt}"
        if fmt == "npz":
            write_cutout_npz(path, cube, {"galaxy_id": f"g{i}"})
        else:
            write_cutout_fits(path, cube)
        rows.append({"galaxy_id": f"g{i}", "cutout_path": path.name, "ra": 150 + i * 1e-3, "dec": 2.0})
    manifest = directory / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest, index=False)
    return manifest


@pytest.fixture(autouse=True)
def _isolated_lenscal_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.lenscal or an exported registry URL from tests."""
    monkeypatch.setenv("LENSCAL_HOME", str(tmp_path_factory.mktemp("lenscal-home")))
    monkeypatch.delenv("LENSCAL_REGISTRY_URL", raising=False)


SEED_REGISTRY = TEAM_KIT / "seed" / "EXPERIMENT_REGISTRY.md"
