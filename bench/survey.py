"""Survey scoring at scale on this machine: N mock cutouts scored into a catalogue by the
195K BottleneckedResNet, through real scorer services (gRPC, float16, streams) and in this
process, against the raw in-process engine on the same machine in the same run.

    .venv/bin/python bench/survey.py [--n 1000000] [--unique 8192] [--workers 1]

The survey: ``--unique`` distinct mock cutouts (noise + a galaxy blob) packed once as
float16 shards; an N-row shard directory whose shard files are hard links to those (so a
million cutouts need ~0.5 GB of disk instead of 61 GB) with its own N-row manifest (unique
galaxy ids, positions). Reads go through the page cache like a warm disk; say so when quoting.

Rows (one JSON in bench/out/survey.json, and bench/out/rates-cpu.json for `lenscal plan`):
- engine: the in-process engine (ONNX Runtime on model.raw.onnx, preprocessing included) on
  cutouts already in memory: the baseline;
- read: ShardReader.read_range alone over the survey, one process;
- survey over gRPC: `lenscal score-survey --scorer ...` against `lenscal serve scorer`
  (--workers K), cutouts/s and peak RSS of the client and of the server, ratio to the engine;
- survey in-process: `lenscal score-survey --model ...`, cutouts/s, peak RSS, ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "out"
sys.path.insert(0, str(OUT.parent.parent))  # tests.conftest


def build_survey(root: Path, n: int, unique: int, shard_rows: int = 1024) -> Path:
    """Shards of ``unique`` cutouts, then an ``n``-row directory of hard links to them."""
    from lenscal.data.ingest import ingest
    from lenscal.data.shards import ShardEntry, ShardIndex, ShardReader
    from lenscal.fsutil import sha256_file

    base = root / "base"
    if not (base / "shards.json").is_file():
        from tests.conftest import make_toy_cutouts  # noise + a galaxy blob, as the tests use

        manifest = make_toy_cutouts(root / "toy", unique, seed=0)
        ingest(manifest, base, dtype="float16", shard_size=shard_rows, progress=False)
        shutil.rmtree(root / "toy")
    source = ShardReader(base)
    survey = root / f"survey-{n}"
    if (survey / "shards.json").is_file():
        return survey
    survey.mkdir(parents=True, exist_ok=True)
    entries, row, number = [], 0, 0
    digests = {e.file: sha256_file(base / e.file) for e in source.index.shards}
    while row < n:
        for entry in source.index.shards:
            if row >= n:
                break
            take = min(entry.rows, n - row)
            if take < entry.rows:  # the last, partial shard: a real (smaller) file
                data = np.load(base / entry.file, mmap_mode="r")[:take]
                name = f"shard-{number:05d}.npy"
                np.save(survey / name, np.ascontiguousarray(data))
                digest = sha256_file(survey / name)
            else:
                name = f"shard-{number:05d}.npy"
                os.link(base / entry.file, survey / name)
                digest = digests[entry.file]
            size = (survey / name).stat().st_size
            entries.append(ShardEntry(number, name, take, row, size, digest))
            row, number = row + take, number + 1
    ShardIndex(
        dtype=source.index.dtype,
        record_shape=source.index.record_shape,
        shard_size=shard_rows,
        total_rows=n,
        source_sha256="bench-survey",
        shards=entries,
        complete=True,
    ).write(survey)
    rng = np.random.default_rng(1)
    pd.DataFrame(
        {
            "galaxy_id": [f"g{i:08d}" for i in range(n)],
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        }
    ).to_parquet(survey / "manifest.parquet", index=False, row_group_size=65_536)
    return survey


def make_bundle(directory: Path) -> Path:
    import torch

    from lenscal.models import create_model
    from lenscal.models.bundle import export_onnx, save_bundle
    from lenscal.preprocess import ANNULUS_GEN5, PreprocessSpec

    if (directory / "model.raw.onnx").is_file():
        return directory
    torch.manual_seed(0)
    bundle = save_bundle(
        directory,
        create_model("bottlenecked_resnet"),
        arch="bottlenecked_resnet",
        arch_kwargs={},
        spec=PreprocessSpec.for_annulus(ANNULUS_GEN5),
        run_id="resnet-gen1",
    )
    export_onnx(bundle)
    return bundle


def engine_rate(bundle: Path, seconds: float) -> float:
    from lenscal.scoring.local import LocalScorer

    x = np.random.default_rng(2).normal(0, 0.01, (4096, 3, 101, 101)).astype(np.float16)
    with LocalScorer(bundle, device="cpu") as scorer:
        scorer.score(x[:512])
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            scorer.score(x)
            done += len(x)
        return done / (time.perf_counter() - start)


def read_rate(survey: Path, limit: int) -> float:
    from lenscal.data.shards import ShardReader

    reader = ShardReader(survey)
    n = min(len(reader), limit)
    start = time.perf_counter()
    for s in range(0, n, 4096):
        reader.read_range(s, min(n, s + 4096))
    return n / (time.perf_counter() - start)


def timed(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a child command that must succeed."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:]); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
    )
    run = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True)
    seconds, kb, code = run.stdout.split()[-3:]
    if int(code) != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{run.stderr[-3000:]}")
    return float(seconds), float(kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--unique", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=1, help="scorer server processes")
    parser.add_argument("--streams", type=int, default=4, help="streams per replica")
    parser.add_argument("--engine-seconds", type=float, default=30.0)
    parser.add_argument("--root", type=Path, default=None, help="work directory (default: a temp dir)")
    args = parser.parse_args()

    from lenscal.rpc.launch import running_service

    lenscal = [sys.executable, "-m", "lenscal.cli"]
    root = args.root or Path(tempfile.mkdtemp(prefix="lenscal-bench-survey-"))
    t0 = time.perf_counter()
    survey = build_survey(root, args.n, min(args.unique, args.n))
    bundle = make_bundle(root / "bundle")
    setup_s = time.perf_counter() - t0
    print(f"survey of {args.n:,} rows ready in {setup_s:.0f} s ({root})", flush=True)

    engine = engine_rate(bundle, args.engine_seconds)
    print(f"engine (in memory): {engine:,.0f} cutouts/s", flush=True)
    reading = read_rate(survey, 200_000)
    print(f"read_range: {reading:,.0f} cutouts/s", flush=True)

    rows: dict[str, dict[str, float]] = {}
    with running_service(
        "scorer", "--model", str(bundle), "--device", "cpu", "--workers", str(args.workers), timeout_s=300
    ) as (endpoint, server):
        seconds, rss = timed(
            [*lenscal, "score-survey", "--shards", str(survey), "--out", str(root / "cat-grpc"),
             "--scorer", endpoint, "--streams-per-replica", str(args.streams)]
        )  # fmt: skip
        server_rss = _rss_of_tree(server.pid)
    rows["survey_grpc"] = {"seconds": seconds, "cutouts_per_s": args.n / seconds, "client_peak_rss_mb": rss,
                           "server_rss_mb_at_end": server_rss}  # fmt: skip
    print(f"survey over gRPC: {args.n / seconds:,.0f} cutouts/s, client peak RSS {rss:.0f} MB", flush=True)
    seconds, rss = timed(
        [*lenscal, "score-survey", "--shards", str(survey), "--out", str(root / "cat-local"),
         "--model", str(bundle), "--device", "cpu"]
    )  # fmt: skip
    rows["survey_in_process"] = {"seconds": seconds, "cutouts_per_s": args.n / seconds, "peak_rss_mb": rss}
    print(f"survey in-process: {args.n / seconds:,.0f} cutouts/s, peak RSS {rss:.0f} MB", flush=True)
    for row in rows.values():
        row["ratio_to_engine"] = row["cutouts_per_s"] / engine

    a = pd.read_parquet(root / "cat-grpc" / "parts", columns=["row", "p_resnet-gen1"]).sort_values("row")
    b = pd.read_parquet(root / "cat-local" / "parts", columns=["row", "p_resnet-gen1"]).sort_values("row")
    agree = float(np.abs(a["p_resnet-gen1"].to_numpy() - b["p_resnet-gen1"].to_numpy()).max())
    report = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "n": args.n,
        "unique_cutouts": min(args.unique, args.n),
        "model": "bottlenecked_resnet (195,589 params), ONNX Runtime, model.raw.onnx",
        "engine_cutouts_per_s": engine,
        "read_range_cutouts_per_s": reading,
        **rows,
        "grpc_vs_in_process_max_probability_difference": agree,
        "setup_s": setup_s,
        "note": "shard files are hard links to the unique cutouts: reads come from the page cache",
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "survey.json").write_text(json.dumps(report, indent=1) + "\n")
    rates = {
        "device": f"CPU ({os.cpu_count()} cores)",
        "source": "bench/survey.py",
        "stages": {
            "read": {"cutouts_per_s": reading, "per": "process"},
            "model": {
                "cutouts_per_s": engine,
                "per": "cpu",
                "note": "preprocessing inside model.raw.onnx: counted here, not in a preprocess stage",
            },
        },
    }
    (OUT / "rates-cpu.json").write_text(json.dumps(rates, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this process's own peak RSS: {peak:.0f} MB)")


def _rss_of_tree(pid: int) -> float:
    """Resident MB of a process and its children now (Linux /proc)."""
    total = 0
    pids = [pid]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().split()[3]) == pid:
                    pids.append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total / 2**20


if __name__ == "__main__":
    main()
