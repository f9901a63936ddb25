"""Pack the cutouts a manifest references into shards (see lenscal.data.shards).

Row ``i`` of the manifest becomes row ``i`` of the shard set: shard ``i // shard_size``,
record ``i % shard_size``. An ingest interrupted at any point resumes: committed shards
(listed in the index) are kept, anything else is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.data.cutouts import load_cutout
from lenscal.data.manifest import read_manifest, write_manifest
from lenscal.data.shards import (
    INDEX_NAME,
    STORAGE_DTYPES,
    ShardEntry,
    ShardIndex,
    ShardReader,
    rows_file_name,
    shard_file_name,
)
from lenscal.errors import CutoutError, ShardError
from lenscal.fsutil import TMP_SUFFIX, atomic_path, atomic_write_text, sha256_file
from lenscal.progress import progress_bar
from lenscal.survey import BANDS, CUTOUT_SIZE, FLOAT16_MAX

PathLike = str | os.PathLike[str]
ON_ERROR = ("fail", "skip")


@dataclass
class IngestReport:
    directory: Path
    rows: int
    dtype: str
    shards_written: int
    shards_reused: int
    rows_with_nan: int
    failed_rows: list[tuple[int, str]] = field(default_factory=list)


def ingest(
    manifest: PathLike,
    out_dir: PathLike,
    *,
    dtype: str = "float32",
    shard_size: int = 4096,
    size: int = CUTOUT_SIZE,
    data_root: PathLike | None = None,
    on_error: str = "fail",
    workers: int = 4,
    overwrite: bool = False,
    progress: bool | None = None,
) -> IngestReport:
    """Pack every cutout ``manifest`` references into ``out_dir``; resumable and atomic.

    ``dtype``: storage type, "float32" or "float16" (values beyond +-65504 nmgy are refused).
    ``data_root``: base for relative ``cutout_path`` values (default: the manifest's folder).
    ``on_error``: "fail" stops at the first unreadable cutout; "skip" stores NaNs for it and
    records the reason in the output manifest's ``ingest_error`` column.
    """
    if dtype not in STORAGE_DTYPES:
        raise ShardError(f"dtype {dtype!r} is not a storage dtype; choose one of {sorted(STORAGE_DTYPES)}")
    if on_error not in ON_ERROR:
        raise ShardError(f"on_error {on_error!r} must be one of {ON_ERROR}")
    if shard_size < 1:
        raise ShardError(f"shard_size must be >= 1, got {shard_size}")
    manifest_path = Path(manifest)
    df = read_manifest(manifest_path, required=("galaxy_id", "cutout_path"))
    if len(df) == 0:
        raise ShardError(f"{manifest_path}: manifest has no rows")
    root = Path(data_root) if data_root is not None else manifest_path.parent
    paths = [p if Path(p).is_absolute() else str(root / p) for p in df["cutout_path"].astype(str)]
    ids = df["galaxy_id"].astype(str).tolist()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record_shape = (len(BANDS), size, size)
    plan_hash = _plan_sha256(ids, paths, dtype, shard_size, record_shape)
    index = _open_or_create_index(out, plan_hash, dtype, shard_size, record_shape, len(df), overwrite)
    for stale in out.glob(f".*{TMP_SUFFIX}*"):
        stale.unlink()  # leftovers of a killed ingest

    reused = len(index.shards)
    np_dtype = STORAGE_DTYPES[dtype]
    todo = range(reused, index.planned_shards)
    with (
        progress_bar(len(df), f"ingest -> {out.name}", enabled=progress) as advance,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        advance(index.committed_rows)
        for number in todo:
            lo, hi = number * shard_size, min((number + 1) * shard_size, len(df))
            entry, rows_info = _write_shard(
                out, number, lo, hi, ids, paths, np_dtype, record_shape, on_error, pool, advance
            )
            atomic_write_text(out / rows_file_name(number), json.dumps(rows_info) + "\n")
            index.shards.append(entry)
            index.write(out)

    rows = [r for e in index.shards for r in json.loads((out / rows_file_name(e.number)).read_text())]
    result = df.copy()
    result["shard"] = np.repeat([e.number for e in index.shards], [e.rows for e in index.shards])
    result["shard_row"] = np.concatenate([np.arange(e.rows) for e in index.shards])
    result["cutout_sha256"] = [r["sha256"] for r in rows]
    result["nan_count"] = [r["nan_count"] for r in rows]
    if any(r.get("error") for r in rows):
        result["ingest_error"] = [r.get("error") or None for r in rows]
    write_manifest(result, out / "manifest.parquet")
    index.complete = True
    index.write(out)
    return IngestReport(
        directory=out,
        rows=len(df),
        dtype=dtype,
        shards_written=len(todo),
        shards_reused=reused,
        rows_with_nan=int((result["nan_count"] > 0).sum()),
        failed_rows=[(i, str(r["error"])) for i, r in enumerate(rows) if r.get("error")],
    )


def _write_shard(
    out: Path,
    number: int,
    lo: int,
    hi: int,
    ids: list[str],
    paths: list[str],
    np_dtype: type[np.floating[Any]],
    record_shape: tuple[int, int, int],
    on_error: str,
    pool: ThreadPoolExecutor,
    advance: object,
) -> tuple[ShardEntry, list[dict[str, object]]]:
    final = out / shard_file_name(number)
    rows_info: list[dict[str, object]] = []
    with atomic_path(final) as tmp:
        records = np.lib.format.open_memmap(tmp, mode="w+", dtype=np_dtype, shape=(hi - lo, *record_shape))
        for k, (data, error) in enumerate(
            pool.map(lambda i: _read_one(paths[i], record_shape), range(lo, hi))
        ):
            if error is not None:
                if on_error == "fail":
                    raise error
                data = np.full(record_shape, np.nan, dtype=np.float32)
            if np_dtype is np.float16:
                finite = data[np.isfinite(data)]
                if finite.size and float(np.abs(finite).max()) > FLOAT16_MAX:
                    raise CutoutError(
                        f"{paths[lo + k]}: |value| {float(np.abs(finite).max()):.4g} nmgy exceeds the "
                        f"float16 range ({FLOAT16_MAX}); ingest with --dtype float32"
                    )
            stored = data.astype(np_dtype)
            records[k] = stored
            rows_info.append(
                {
                    "galaxy_id": ids[lo + k],
                    "sha256": hashlib.sha256(stored.tobytes()).hexdigest(),
                    "nan_count": int(np.isnan(stored).sum()),
                    "error": None if error is None else str(error),
                }
            )
            advance(1)  # type: ignore[operator]
        records.flush()
        del records
    return (
        ShardEntry(
            number=number,
            file=final.name,
            rows=hi - lo,
            first_row=lo,
            nbytes=final.stat().st_size,
            sha256=sha256_file(final),
        ),
        rows_info,
    )


def _read_one(path: str, record_shape: tuple[int, int, int]) -> tuple[np.ndarray, CutoutError | None]:
    try:
        return load_cutout(path, size=record_shape[1]).data, None
    except CutoutError as exc:
        return np.empty(0, dtype=np.float32), exc


def _plan_sha256(
    ids: list[str], paths: list[str], dtype: str, shard_size: int, record_shape: tuple[int, ...]
) -> str:
    digest = hashlib.sha256(json.dumps([dtype, shard_size, list(record_shape)]).encode())
    for gid, path in zip(ids, paths, strict=True):
        digest.update(f"{gid}\0{path}\n".encode())
    return digest.hexdigest()


def _open_or_create_index(
    out: Path,
    plan_hash: str,
    dtype: str,
    shard_size: int,
    record_shape: tuple[int, int, int],
    total_rows: int,
    overwrite: bool,
) -> ShardIndex:
    fresh = ShardIndex(
        dtype=dtype,
        record_shape=record_shape,
        shard_size=shard_size,
        total_rows=total_rows,
        source_sha256=plan_hash,
        shards=[],
    )
    existing: ShardIndex | None = None
    if (out / INDEX_NAME).exists() and not overwrite:
        existing = ShardIndex.read(out)  # a corrupted index raises, naming the file
    if existing is not None and existing.source_sha256 != plan_hash:
        raise ShardError(
            f"{out}: already holds shards built from another manifest, dtype or shard size; "
            "choose a new --out or pass --overwrite"
        )
    if existing is None or existing.source_sha256 != plan_hash:
        for old in [*out.glob("shard-*.npy"), *out.glob("shard-*.rows.json"), out / "manifest.parquet"]:
            old.unlink(missing_ok=True)
        fresh.write(out)
        return fresh
    # Resume: keep committed shards whose files are intact, rewrite the rest.
    kept: list[ShardEntry] = []
    for entry in existing.shards:
        path = out / entry.file
        if (
            not path.is_file()
            or path.stat().st_size != entry.nbytes
            or not (out / rows_file_name(entry.number)).is_file()
        ):
            break
        kept.append(entry)
    existing.shards = kept
    existing.complete = False
    existing.write(out)
    return existing


def shards_for_manifest(manifest: PathLike, *, progress: bool | None = None) -> Path:
    """The shard directory holding a manifest's cutouts: the directory itself for the output
    manifest of an ingest, else ``<stem>.shards`` beside the manifest, packed (float16) on
    first use and resumed if a previous packing was interrupted."""
    path = Path(manifest)
    if path.name == "manifest.parquet" and (path.parent / INDEX_NAME).is_file():
        return path.parent
    target = path.with_name(path.stem + ".shards")
    ingest(path, target, dtype="float16", progress=progress)
    return target


def open_reader(
    *, shards: PathLike | None = None, manifest: PathLike | None = None, progress: bool | None = None
) -> ShardReader:
    """The cutouts a command works on: a shard directory, or a manifest's cutouts (packed
    into shards beside it on first use). Exactly one of the two."""
    if (shards is None) == (manifest is None):
        raise ShardError("give a shard directory (--shards) or a manifest (--manifest), not both")
    if shards is not None:
        return ShardReader(shards)
    assert manifest is not None
    return ShardReader(shards_for_manifest(manifest, progress=progress))
