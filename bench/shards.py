"""Random-access read throughput: packed shards vs one NPZ file per cutout, same cutouts, one core.

    .venv/bin/python bench/shards.py [--n 20000] [--reads 4000] [--workdir DIR]

Baseline: the team's loader, ``np.load(path)["cutout"]`` per cutout (HWC -> CHW). Both
paths read the same cutouts in the same random order in this run, twice: "warm" with the
files in the page cache (per-cutout CPU overhead), "cold" with them evicted before every
timed pass (posix_fadvise DONTNEED), as on a first epoch or a network file system.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.data.ingest import ingest
from lenscal.data.shards import ShardReader


def make_npz_set(directory: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    base = rng.normal(0, 0.01, (64, 101, 101, 3)).astype(np.float32)
    rows = []
    for i in range(n):
        path = directory / f"c{i:06d}.npz"
        np.savez(path, cutout=base[i % 64] + np.float32(i * 1e-6), meta_galaxy_id=np.asarray(f"g{i}"))
        rows.append({"galaxy_id": f"g{i}", "cutout_path": path.name})
    manifest = directory / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest, index=False)
    return manifest


def evict(paths: list[Path]) -> None:
    """Drop these files from the page cache (clean pages; no root needed)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def time_it(fn, repeats: int = 3, cold: list[Path] | None = None) -> float:
    best = float("inf")
    for _ in range(repeats):
        if cold is not None:
            evict(cold)
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=256, help="rows per reader.read() call")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/out/shards.json"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lenscal-bench-"))
    try:
        t0 = time.perf_counter()
        manifest = make_npz_set(work / "npz", args.n, seed=0)
        print(f"wrote {args.n} NPZ files in {time.perf_counter() - t0:.1f} s")
        results = {}
        for dtype in ("float32", "float16"):
            t0 = time.perf_counter()
            ingest(manifest, work / f"shards-{dtype}", dtype=dtype, workers=1, progress=False)
            results[f"ingest_{dtype}_cutouts_per_s"] = args.n / (time.perf_counter() - t0)

        paths = pd.read_parquet(manifest).cutout_path.map(lambda p: str(work / "npz" / p)).tolist()
        order = np.random.default_rng(1).integers(0, args.n, args.reads)

        def npz_loop() -> None:
            for i in order:
                with np.load(paths[i]) as npz:
                    np.ascontiguousarray(npz["cutout"].transpose(2, 0, 1))

        npz_files = [Path(p) for p in paths]
        results["npz_per_file_warm"] = args.reads / time_it(npz_loop)
        results["npz_per_file_cold"] = args.reads / time_it(npz_loop, cold=npz_files)
        for dtype in ("float32", "float16"):
            reader = ShardReader(work / f"shards-{dtype}")
            shard_files = sorted((work / f"shards-{dtype}").glob("shard-*.npy"))

            def single(reader: ShardReader = reader) -> None:
                for i in order:
                    reader[int(i)]

            def batched(reader: ShardReader = reader, out_dtype: object = np.float32) -> None:
                for s in range(0, len(order), args.batch):
                    reader.read(order[s : s + args.batch], dtype=out_dtype)

            def batched_fresh(dtype: str = dtype) -> None:
                # A fresh reader: pages mapped by an open reader would survive the eviction.
                batched(ShardReader(work / f"shards-{dtype}"))

            results[f"shard_{dtype}_single_warm"] = args.reads / time_it(single)
            results[f"shard_{dtype}_batch{args.batch}_warm"] = args.reads / time_it(batched)
            results[f"shard_{dtype}_batch{args.batch}_cold"] = args.reads / time_it(
                batched_fresh, cold=shard_files
            )
            buffer = np.empty((args.batch, *reader.record_shape), dtype=np.float32)

            def batched_reuse(reader: ShardReader = reader, buffer: np.ndarray = buffer) -> None:
                for s in range(0, len(order), args.batch):
                    chunk = order[s : s + args.batch]
                    reader.read(chunk, out=buffer[: len(chunk)])

            results[f"shard_{dtype}_batch{args.batch}_reused_buffer_warm"] = args.reads / time_it(
                batched_reuse
            )
            if dtype == "float16":
                raw = functools.partial(batched, out_dtype=None)
                results[f"shard_{dtype}_batch{args.batch}_as_stored_warm"] = args.reads / time_it(raw)
        print(f"\nrandom access, {args.reads} reads of {args.n} cutouts, one core")
        print("warm: files in the page cache; cold: evicted before every timed pass")
        print(f"{'path':42s} {'cutouts/s':>12s} {'x NPZ':>8s}")
        for key, value in results.items():
            base = results["npz_per_file_cold" if key.endswith("cold") else "npz_per_file_warm"]
            ratio = "" if key.startswith("ingest") else f"{value / base:8.1f}"
            print(f"{key:42s} {value:12,.0f} {ratio:>8s}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"n": args.n, "reads": args.reads, **results}, indent=2) + "\n")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
