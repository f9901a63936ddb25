"""Manifests: one row per cutout, Parquet (CSV accepted on read).

The team's column names are kept, and the Tractor catalogue names a real user brings are
accepted. ``validate_manifest`` checks each known column it finds and raises a
ManifestError naming the column, the first bad row and the rule it breaks. Unknown columns
pass through untouched.

Units: ``ra, dec`` deg (ICRS); ``psfsize_*`` arcsec (equivalent-Gaussian FWHM);
``psfdepth_*`` nmgy^-2 (inverse variance of point-source flux); ``ebv`` mag;
``flux_*`` nmgy; ``shape_r`` arcsec (half-light radius).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.errors import ManifestError
from lenscal.fsutil import atomic_path

PathLike = str | os.PathLike[str]
HEALPIX_128_NPIX = 12 * 128 * 128
TRACTOR_TYPES = frozenset({"PSF", "REX", "DEV", "EXP", "SER", "DUP"})
SPLITS = frozenset({"train", "val", "test"})
#: Lens-candidate grades in the ``tier`` column: A (confident), B (probable); empty for negatives.
TIERS: tuple[str, ...] = ("A", "B")


def tier_codes(values: pd.Series | None, n: int) -> np.ndarray:
    """int8 per row: the index of its tier in TIERS, -1 for no tier (negatives, unknown)."""
    if values is None:
        return np.full(n, -1, np.int8)
    return values.map({t: i for i, t in enumerate(TIERS)}).fillna(-1).to_numpy(np.int8)


@dataclass(frozen=True)
class Column:
    """A known manifest column: its kind, whether nulls are allowed, and its value rule."""

    name: str
    kind: str  # "str" | "float" | "int"
    rule: str = ""
    check: Callable[[pd.Series], pd.Series] | None = None  # True where the value is valid
    nullable: bool = True


def _between(lo: float, hi: float, *, hi_open: bool = False) -> Callable[[pd.Series], pd.Series]:
    return lambda s: (s >= lo) & ((s < hi) if hi_open else (s <= hi))


def _one_of(values: Iterable[str]) -> Callable[[pd.Series], pd.Series]:
    allowed = frozenset(values)
    return lambda s: s.astype(str).str.strip().isin(allowed)


_positive = ("> 0", lambda s: s > 0)
_non_negative = (">= 0", lambda s: s >= 0)

TEAM_COLUMNS: tuple[Column, ...] = (
    Column("galaxy_id", "str", "unique, not empty", nullable=False),
    Column("cutout_path", "str", "a path to a .fits/.npz cutout", lambda s: s.astype(str).str.len() > 0),
    Column("ra", "float", "0 <= ra < 360 deg", _between(0.0, 360.0, hi_open=True)),
    Column("dec", "float", "-90 <= dec <= 90 deg", _between(-90.0, 90.0)),
    Column("type_bin", "str"),
    Column("nobs_z_bin", "str"),
    Column("split", "str", f"one of {sorted(SPLITS)}", _one_of(SPLITS)),
    Column("pool", "str"),
    Column("confuser_category", "str"),
    Column("psfsize_r", "float", *_positive),
    Column("psfdepth_r", "float", *_non_negative),
    Column("ebv", "float", *_non_negative),
    Column("healpix_128", "int", f"0 <= pixel < {HEALPIX_128_NPIX}", _between(0, HEALPIX_128_NPIX - 1)),
    Column("label", "int", "0 or 1", lambda s: s.isin([0, 1])),
    Column("tier", "str", "A or B (empty for negatives)", _one_of(TIERS)),
    Column("sample_weight", "float", *_non_negative),
)

TRACTOR_COLUMNS: tuple[Column, ...] = (
    Column("psfsize_g", "float", *_positive),
    Column("psfsize_z", "float", *_positive),
    Column("psfdepth_g", "float", *_non_negative),
    Column("psfdepth_z", "float", *_non_negative),
    Column("shape_r", "float", *_non_negative),
    Column("shape_e1", "float", "-1 <= e1 <= 1", _between(-1.0, 1.0)),
    Column("shape_e2", "float", "-1 <= e2 <= 1", _between(-1.0, 1.0)),
    Column("sersic", "float", "0 <= n <= 10", _between(0.0, 10.0)),
    Column("type", "str", f"one of {sorted(TRACTOR_TYPES)}", _one_of(TRACTOR_TYPES)),
    Column("flux_g", "float"),
    Column("flux_r", "float"),
    Column("flux_z", "float"),
    Column("nobs_g", "int", *_non_negative),
    Column("nobs_r", "int", *_non_negative),
    Column("nobs_z", "int", *_non_negative),
)

#: Columns lenscal itself adds (ingest, splits).
LENSCAL_COLUMNS: tuple[Column, ...] = (
    Column("shard", "int", *_non_negative),
    Column("shard_row", "int", *_non_negative),
    Column("cutout_sha256", "str"),
    Column("nan_count", "int", *_non_negative),
)

COLUMNS: dict[str, Column] = {c.name: c for c in (*TEAM_COLUMNS, *TRACTOR_COLUMNS, *LENSCAL_COLUMNS)}


def validate_manifest(
    df: pd.DataFrame, *, required: Iterable[str] = ("galaxy_id",), source: str = "manifest"
) -> pd.DataFrame:
    """Check every known column present in ``df`` and that ``required`` columns exist.

    Returns ``df`` unchanged. Raises ManifestError: "<source>: column 'x': row i
    (galaxy_id=...): value v breaks rule ...".
    """
    for name in required:
        if name not in df.columns:
            raise ManifestError(
                f"{source}: required column {name!r} is missing (columns: {', '.join(map(str, df.columns))})"
            )
    for name in df.columns:
        column = COLUMNS.get(str(name))
        if column is not None:
            _check_column(df, column, source)
    if "galaxy_id" in df.columns:
        dup = df["galaxy_id"].duplicated(keep="first")
        if dup.any():
            _fail(df, source, "galaxy_id", dup.to_numpy(), "is a duplicate; galaxy_id must be unique")
    return df


def _check_column(df: pd.DataFrame, column: Column, source: str) -> None:
    series = df[column.name]
    null = series.isna().to_numpy()
    if not column.nullable and null.any():
        _fail(df, source, column.name, null, "is empty; this column may not be empty")
    values = series[~null]
    if values.empty:
        return
    if column.kind in ("float", "int"):
        if series.dtype == bool or not pd.api.types.is_numeric_dtype(series.dtype):
            numeric = pd.to_numeric(series, errors="coerce")
            bad = numeric.isna().to_numpy() & ~null
            _fail(df, source, column.name, bad, f"is not a number (column must be {column.kind})")
        finite = np.isfinite(values.to_numpy(dtype=float))
        if not finite.all():
            _fail(df, source, column.name, _expand(null, ~finite), "is not finite")
        if column.kind == "int":
            as_float = values.to_numpy(dtype=float)
            frac = as_float != np.round(as_float)
            if frac.any():
                _fail(df, source, column.name, _expand(null, frac), "is not an integer")
    elif column.kind == "str":
        not_str = ~values.map(lambda v: isinstance(v, (str, int, np.integer))).to_numpy(dtype=bool)
        if not_str.any():
            _fail(df, source, column.name, _expand(null, not_str), "is not text")
    if column.check is not None:
        ok = column.check(values).to_numpy(dtype=bool)
        if not ok.all():
            _fail(df, source, column.name, _expand(null, ~ok), f"breaks the rule: {column.rule}")


def _expand(null: np.ndarray, bad_among_non_null: np.ndarray) -> np.ndarray:
    full = np.zeros(null.shape, dtype=bool)
    full[~null] = bad_among_non_null
    return full


def _fail(df: pd.DataFrame, source: str, name: str, bad: np.ndarray, problem: str) -> None:
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    value = df[name].iloc[row]
    if isinstance(value, np.generic):
        value = value.item()  # show 2.0, not np.float64(2.0)
    where = f"row {row}"
    if "galaxy_id" in df.columns and name != "galaxy_id":
        where += f" (galaxy_id={df['galaxy_id'].iloc[row]!r})"
    raise ManifestError(
        f"{source}: column {name!r}: {where}: value {value!r} {problem} ({int(bad.sum())} bad row(s) in all)"
    )


def read_manifest(
    path: PathLike, *, required: Iterable[str] = ("galaxy_id",), validate: bool = True
) -> pd.DataFrame:
    """Read a Parquet (or CSV) manifest and validate it."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"{p}: no such manifest file")
    try:
        df = pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # pyarrow and pandas raise many types
        raise ManifestError(f"{p}: unreadable manifest ({exc})") from exc
    if "type" in df.columns and pd.api.types.is_string_dtype(df["type"].dtype):
        # Tractor FITS tables pad type strings ("PSF ", "DEV ").
        df["type"] = df["type"].str.strip()
    return validate_manifest(df, required=required, source=str(p)) if validate else df


def write_manifest(df: pd.DataFrame, path: PathLike) -> Path:
    """Write a manifest atomically (Parquet, or CSV for a .csv path)."""
    p = Path(path)
    with atomic_path(p) as tmp:
        if p.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return p
