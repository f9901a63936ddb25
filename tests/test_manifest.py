"""Manifest validation: every known column's rule, with errors naming column, row and galaxy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenscal.data.manifest import read_manifest, validate_manifest, write_manifest
from lenscal.errors import ManifestError


def team_manifest() -> pd.DataFrame:
    """Three rows using every team column and the Tractor columns, all valid."""
    return pd.DataFrame(
        {
            "galaxy_id": ["a", "b", "c"],
            "cutout_path": ["a.npz", "b.npz", "c.fits"],
            "ra": [0.0, 150.1, 359.9],
            "dec": [-89.0, 2.2, 90.0],
            "type_bin": ["SER", "DEV", "REX"],
            "nobs_z_bin": ["1-2", "3+", "3+"],
            "split": ["train", "val", None],
            "pool": ["N1", "N2", "pos"],
            "confuser_category": [None, "ring", None],
            "psfsize_r": [1.1, 1.3, np.nan],
            "psfdepth_r": [150.0, 0.0, 300.0],
            "ebv": [0.02, 0.0, 0.1],
            "healpix_128": [0, 1000, 196607],
            "label": [0, 0, 1],
            "tier": [None, None, "A"],
            "sample_weight": [1.0, 1.0, 0.5],
            "psfsize_g": [1.2, 1.4, 1.3],
            "psfsize_z": [1.0, 1.2, 1.1],
            "psfdepth_g": [400.0, 300.0, 350.0],
            "psfdepth_z": [40.0, 30.0, 35.0],
            "shape_r": [0.5, 2.0, 0.0],
            "shape_e1": [0.1, -0.3, 0.0],
            "shape_e2": [0.0, 0.2, -1.0],
            "sersic": [4.0, 1.0, 0.0],
            "type": ["DEV", "EXP", "PSF"],
            "flux_g": [1.0, -0.01, 3.0],
            "flux_r": [2.0, 0.5, 4.0],
            "flux_z": [3.0, 0.9, 5.0],
            "nobs_g": [2, 3, 0],
            "nobs_r": [2, 3, 1],
            "nobs_z": [4, 5, 6],
            "user_extra": ["kept", "as", "is"],
        }
    )


def test_valid_team_and_tractor_manifest_passes() -> None:
    df = team_manifest()
    assert validate_manifest(df, required=("galaxy_id", "cutout_path")) is df


@pytest.mark.parametrize(
    ("column", "row", "value", "fragment"),
    [
        ("ra", 1, 360.0, "0 <= ra < 360"),
        ("dec", 2, -91.0, "-90 <= dec <= 90"),
        ("psfsize_r", 0, 0.0, "> 0"),
        ("psfdepth_g", 1, -5.0, ">= 0"),
        ("label", 2, 2, "0 or 1"),
        ("split", 1, "training", "one of ['test', 'train', 'val']"),
        ("tier", 2, "C", "A or B"),
        ("shape_e1", 0, 1.5, "-1 <= e1 <= 1"),
        ("type", 1, "GAL", "one of ['DEV', 'DUP', 'EXP', 'PSF', 'REX', 'SER']"),
        ("healpix_128", 0, 196608, "0 <= pixel < 196608"),
        ("nobs_z", 2, 1.5, "is not an integer"),
        ("sample_weight", 1, np.inf, "is not finite"),
        ("psfsize_r", 1, "wide", "is not a number"),
    ],
)
def test_bad_value_names_column_row_and_rule(column: str, row: int, value: object, fragment: str) -> None:
    df = team_manifest()
    df[column] = df[column].astype(object)
    df.loc[row, column] = value
    with pytest.raises(ManifestError) as err:
        validate_manifest(df, source="m.parquet")
    message = str(err.value)
    assert message.startswith(f"m.parquet: column {column!r}: row {row} (galaxy_id={df.galaxy_id[row]!r})")
    assert fragment in message


def test_missing_required_column_and_duplicates() -> None:
    df = team_manifest().drop(columns=["cutout_path"])
    with pytest.raises(ManifestError, match="required column 'cutout_path' is missing"):
        validate_manifest(df, required=("galaxy_id", "cutout_path"))
    dup = team_manifest()
    dup.loc[2, "galaxy_id"] = "a"
    with pytest.raises(ManifestError, match="column 'galaxy_id': row 2: value 'a' is a duplicate"):
        validate_manifest(dup)
    empty = team_manifest()
    empty.loc[1, "galaxy_id"] = None
    with pytest.raises(
        ManifestError, match=r"column 'galaxy_id': row 1: value \S+ is empty; this column may not be empty"
    ):
        validate_manifest(empty)


def test_read_write_parquet_and_csv_strip_tractor_padding(tmp_path: Path) -> None:
    df = team_manifest()
    df["type"] = ["DEV ", "EXP ", "PSF "]  # as Tractor FITS tables pad them
    for name in ("m.parquet", "m.csv"):
        write_manifest(df, tmp_path / name)
        back = read_manifest(tmp_path / name)
        assert back["type"].tolist() == ["DEV", "EXP", "PSF"]
        assert back["galaxy_id"].tolist() == ["a", "b", "c"]
    with pytest.raises(ManifestError, match="no such manifest file"):
        read_manifest(tmp_path / "absent.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(ManifestError, match="unreadable manifest"):
        read_manifest(tmp_path / "junk.parquet")
