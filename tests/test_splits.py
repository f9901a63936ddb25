"""HEALPix splits on the real lens catalogues: spatial, stable across processes, leak-checked."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenscal.data.splits import SCHEMES, assign_splits, check_splits, healpix_index
from lenscal.errors import SplitError

from .conftest import CATALOGS, LENSCAL


def catalog(name: str) -> pd.DataFrame:
    df = pd.read_csv(CATALOGS / name)
    return df.rename(columns={"RA [deg]": "ra", "DEC [deg]": "dec"})[["name", "ra", "dec"]]


@pytest.fixture(scope="module")
def lenses() -> pd.DataFrame:
    both = pd.concat([catalog("desi_candidates.csv"), catalog("lenscat_catalog.csv")], ignore_index=True)
    assert len(both) > 37_000
    return both


def test_healpix_is_nested_by_hand() -> None:
    # nside 1 base pixels (NESTED = RING at nside 1): 0-3 north at lon 45,135,...; 4-7 on
    # the equator at lon 0,90,...; 8-11 south.
    ra = np.array([45.0, 135.0, 0.0, 90.0, 180.0, 45.0, 315.0])
    dec = np.array([60.0, 60.0, 0.0, 0.0, 0.0, -60.0, -60.0])
    np.testing.assert_array_equal(healpix_index(ra, dec, nside=1), [0, 1, 4, 5, 6, 8, 11])
    # NESTED: a pixel's parent at nside/2 is pixel // 4, so nside 128 -> nside 1 is // 4**7.
    rng = np.random.default_rng(0)
    ra_r, dec_r = rng.uniform(0, 360, 2000), np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    np.testing.assert_array_equal(healpix_index(ra_r, dec_r, 128) // 4**7, healpix_index(ra_r, dec_r, 1))
    np.testing.assert_array_equal(healpix_index(ra_r, dec_r, 128) // 4, healpix_index(ra_r, dec_r, 64))


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_real_catalogue_splits_are_spatial_and_near_scheme(lenses: pd.DataFrame, scheme: str) -> None:
    df = lenses.copy()
    df["split"] = assign_splits(df.ra, df.dec, scheme, seed=42)
    df["healpix_128"] = healpix_index(df.ra, df.dec)
    report = check_splits(df)
    assert report.ok, report.summary()
    assert report.n_pixels > 10_000
    for name, fraction in SCHEMES[scheme]:
        assert report.fractions[name] == pytest.approx(fraction, abs=0.03)
    # Objects in one pixel (positives and negatives alike) share the split.
    assert (df.groupby("healpix_128")["split"].nunique() == 1).all()


def test_seed_changes_assignment(lenses: pd.DataFrame) -> None:
    a = assign_splits(lenses.ra, lenses.dec, "70_30", seed=42)
    b = assign_splits(lenses.ra, lenses.dec, "70_30", seed=43)
    assert 0.3 < (a != b).mean() < 0.55


def _digest_in_subprocess(hashseed: str) -> str:
    code = (
        "import hashlib, pandas as pd\n"
        "from lenscal.data.splits import assign_splits\n"
        f"df = pd.read_csv({str(CATALOGS / 'desi_candidates.csv')!r})\n"
        "s = assign_splits(df.ra, df.dec, '70_15_15', seed=42)\n"
        "print(hashlib.sha256('|'.join(s).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_identical_across_processes_with_different_hash_seeds() -> None:
    df = catalog("desi_candidates.csv")
    here = hashlib.sha256("|".join(assign_splits(df.ra, df.dec, "70_15_15", seed=42)).encode()).hexdigest()
    assert {_digest_in_subprocess("0"), _digest_in_subprocess("12345"), _digest_in_subprocess("random")} == {
        here
    }


def test_check_catches_a_planted_leak_and_a_fake_pixel_column(lenses: pd.DataFrame) -> None:
    df = lenses.copy()
    df["split"] = assign_splits(df.ra, df.dec, "70_30")
    df["healpix_128"] = healpix_index(df.ra, df.dec)
    crowded = df.healpix_128.value_counts()
    pixel = int(crowded.index[0])
    assert crowded.iloc[0] >= 2
    victim = df.index[df.healpix_128 == pixel][0]
    df.loc[victim, "split"] = "val" if df.loc[victim, "split"] == "train" else "train"
    report = check_splits(df)
    assert not report.ok and list(report.leaked_pixels) == [pixel]
    # The team's check grouped by a fake pixel column and could not fail; ours recomputes pixels.
    fake = lenses.copy()
    fake["split"] = np.where(np.arange(len(fake)) % 2 == 0, "train", "val")
    fake["healpix_128"] = np.arange(len(fake)) % 196608
    fake_report = check_splits(fake)
    assert fake_report.leaked_pixels and fake_report.healpix_mismatches > 0


def test_bad_inputs_are_named() -> None:
    with pytest.raises(SplitError, match="unknown split scheme '80_20'"):
        assign_splits([1.0], [2.0], "80_20")
    with pytest.raises(SplitError, match=r"row 1: ra=5.0, dec=95.0 is not a valid sky position"):
        assign_splits([1.0, 5.0], [2.0, 95.0], "70_30")
    with pytest.raises(SplitError, match="needs column 'split'"):
        check_splits(pd.DataFrame({"ra": [1.0], "dec": [1.0]}))


def test_cli_split_assign_check_and_leak_exit_code(tmp_path: Path) -> None:
    src = catalog("lenscat_catalog.csv").rename(columns={"name": "galaxy_id"}).drop_duplicates("galaxy_id")
    manifest = tmp_path / "m.parquet"
    src.to_parquet(manifest, index=False)
    run = subprocess.run(
        [*LENSCAL, "split", "--manifest", str(manifest), "--scheme", "70_15_15", "--seed", "7", "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "OK: no pixel is shared" in run.stdout
    written = pd.read_parquet(manifest)
    np.testing.assert_array_equal(written.split, assign_splits(src.ra, src.dec, "70_15_15", seed=7))
    np.testing.assert_array_equal(written.healpix_128, healpix_index(src.ra, src.dec))
    leaky = written.copy()
    pixel = leaky.healpix_128.value_counts().index[0]
    rows = leaky.index[leaky.healpix_128 == pixel]
    leaky.loc[rows[0], "split"], leaky.loc[rows[1], "split"] = "train", "test"
    leaky.to_parquet(tmp_path / "leaky.parquet", index=False)
    bad = subprocess.run(
        [*LENSCAL, "split", "--manifest", str(tmp_path / "leaky.parquet"), "--check"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and f"pixel {pixel}: " in bad.stdout
