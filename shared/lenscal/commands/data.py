"""`lenscal info`, `ingest`, `split` and `lenscal shards ...`: commands over lenscal.data."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()
shards_app = typer.Typer(help="Inspect and verify packed shard directories.", no_args_is_help=True)
app.add_typer(shards_app, name="shards")


class StorageDType(StrEnum):
    float32 = "float32"
    float16 = "float16"


class OnError(StrEnum):
    fail = "fail"
    skip = "skip"


class Scheme(StrEnum):
    s70_30 = "70_30"
    s70_15_15 = "70_15_15"


@app.command()
def info(
    paths: Annotated[list[Path], typer.Argument(help="Cutout files (.fits, .fits.gz, .npz).")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Read cutouts and print their shape, NaN counts and per-band pixel statistics (nmgy)."""
    import numpy as np

    from lenscal.data.cutouts import load_cutout
    from lenscal.survey import BANDS

    for path in paths:
        cut = load_cutout(path, size=None)
        stats = {
            band: {
                "nan": int(np.isnan(cut.data[i]).sum()),
                "median": float(np.nanmedian(cut.data[i])) if not np.isnan(cut.data[i]).all() else None,
                "max": float(np.nanmax(cut.data[i])) if not np.isnan(cut.data[i]).all() else None,
            }
            for i, band in enumerate(BANDS)
        }
        record = {
            "path": str(path),
            "shape": list(cut.data.shape),
            "nan_count": cut.nan_count,
            "bands": stats,
        }
        if json_out:
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{path}: shape {cut.data.shape}, {cut.nan_count} NaN pixels")
            for band, s in stats.items():
                typer.echo(
                    f"  {band}: NaN {s['nan']:5d}  median {s['median']!s:>12}  max {s['max']!s:>12} nmgy"
                )


@app.command()
def ingest(
    manifest: Annotated[Path, typer.Option(help="Manifest (Parquet or CSV) with galaxy_id and cutout_path.")],
    out: Annotated[Path, typer.Option(help="Shard directory to create or resume.")],
    dtype: Annotated[StorageDType, typer.Option(help="Storage dtype of the shards.")] = StorageDType.float32,
    shard_size: Annotated[int, typer.Option(help="Cutouts per shard file.", min=1)] = 4096,
    data_root: Annotated[
        Path | None, typer.Option(help="Base for relative cutout_path values (default: manifest folder).")
    ] = None,
    on_error: Annotated[
        OnError, typer.Option(help="fail: stop at an unreadable cutout; skip: store NaNs and record why.")
    ] = OnError.fail,
    workers: Annotated[int, typer.Option(help="Reader threads.", min=1)] = 4,
    overwrite: Annotated[bool, typer.Option(help="Replace shards built from another manifest.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pack every cutout a manifest references into memory-mappable shards (atomic, resumable)."""
    from lenscal.data.ingest import ingest as run_ingest

    report = run_ingest(
        manifest,
        out,
        dtype=dtype.value,
        shard_size=shard_size,
        data_root=data_root,
        on_error=on_error.value,
        workers=workers,
        overwrite=overwrite,
        progress=progress and sys.stderr.isatty(),
    )
    typer.echo(
        f"{report.rows} cutouts in {out} ({report.dtype}): {report.shards_written} shard(s) written, "
        f"{report.shards_reused} reused; {report.rows_with_nan} cutout(s) contain NaN pixels"
    )
    for row, error in report.failed_rows[:20]:
        typer.echo(f"  skipped row {row}: {error}", err=True)
    typer.echo(f"manifest with shard, shard_row, cutout_sha256, nan_count: {out / 'manifest.parquet'}")


@app.command()
def split(
    manifest: Annotated[Path, typer.Option(help="Manifest (Parquet or CSV) with ra and dec in degrees.")],
    scheme: Annotated[Scheme | None, typer.Option(help="Split scheme to assign.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pixel hash.")] = 42,
    out: Annotated[
        Path | None, typer.Option(help="Write here instead of updating MANIFEST in place.")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Report pixels shared between splits.")] = False,
    nside: Annotated[int, typer.Option(help="HEALPix nside (NESTED).")] = 128,
    ra_col: Annotated[str, typer.Option(help="Column holding RA [deg].")] = "ra",
    dec_col: Annotated[str, typer.Option(help="Column holding Dec [deg].")] = "dec",
) -> None:
    """Assign spatial HEALPix splits (writes `split` and `healpix_<nside>`) and/or check them.

    With --check alone, checks the manifest's existing `split` column; exits 1 on any leak.
    """
    from lenscal.data.manifest import read_manifest, write_manifest
    from lenscal.data.splits import assign_splits, check_splits, healpix_index

    if scheme is None and not check:
        raise typer.BadParameter("give --scheme to assign splits, --check to check them, or both")
    df = read_manifest(manifest, required=(ra_col, dec_col))
    df = df.rename(columns={ra_col: "ra", dec_col: "dec"})
    if scheme is not None:
        df["healpix_" + str(nside)] = healpix_index(df["ra"].to_numpy(), df["dec"].to_numpy(), nside)
        df["split"] = assign_splits(df["ra"].to_numpy(), df["dec"].to_numpy(), scheme.value, nside, seed)
        target = out or manifest
        write_manifest(df.rename(columns={"ra": ra_col, "dec": dec_col}), target)
        counts = df["split"].value_counts().to_dict()
        typer.echo(f"{len(df)} rows split {scheme.value} (seed {seed}, nside {nside}) -> {target}: {counts}")
    if check:
        report = check_splits(df, nside=nside)
        typer.echo(report.summary())
        if not report.ok:
            raise typer.Exit(1)


@shards_app.command("info")
def shards_info(directory: Annotated[Path, typer.Argument(help="Shard directory.")]) -> None:
    """Print a shard directory's index: dtype, shape, shard count, completeness."""
    from lenscal.data.shards import ShardIndex

    index = ShardIndex.read(directory)
    typer.echo(
        f"{directory}: {index.committed_rows}/{index.total_rows} cutouts {index.record_shape} {index.dtype} "
        f"in {len(index.shards)}/{index.planned_shards} shards; "
        f"{'complete' if index.complete else 'INCOMPLETE (rerun lenscal ingest to resume)'}"
    )


@shards_app.command("verify")
def shards_verify(directory: Annotated[Path, typer.Argument(help="Shard directory.")]) -> None:
    """Re-hash every shard file and every cutout record against the index; exit 1 on mismatch."""
    from lenscal.data.shards import ShardReader

    reader = ShardReader(directory, verify=True)
    bad = reader.verify_records()
    for row in bad[:20]:
        typer.echo(f"row {row}: record hash mismatch", err=True)
    if bad:
        raise typer.Exit(1)
    typer.echo(f"{directory}: {len(reader)} records in {len(reader.index.shards)} shards verified")
