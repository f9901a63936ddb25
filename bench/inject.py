"""Injections/s: lenscal's batched renderer vs lenstronomy on the same parameters, same run.

    .venv/bin/python bench/inject.py [--n 64] [--lenstronomy-n 12]

Both render 3 bands, 101x101 px, 4x4 oversampling, a per-band Gaussian PSF (FFT).
lenstronomy builds one ImageModel per band (its usual use, needed for per-band PSFs).
Per-core figures pin torch to one thread. On CUDA, batches of 256 and 2048. Also the
mock-survey generation rate (cutouts/s, FITS written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lenscal.physics import RenderSpec, render_arcs
from tests.lenstronomy_reference import lenstronomy_arcs, random_params


def rate(fn, n: int, repeats: int = 4, sync=lambda: None) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--lenstronomy-n", type=int, default=12)
    parser.add_argument("--mock-n", type=int, default=500, help="mock-survey cutouts to time")
    parser.add_argument("--out", type=Path, default=Path("bench/out/inject.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    params = random_params(args.n, seed=0)
    results: dict[str, float] = {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import lenstronomy  # noqa: F401

        small = params.slice(0, args.lenstronomy_n)
        all_cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(all_cores)})  # numba/numpy threads would blur "per core"
        results["lenstronomy_1core"] = rate(
            lambda: lenstronomy_arcs(small, RenderSpec()), args.lenstronomy_n, 1
        )
        os.sched_setaffinity(0, all_cores)
    except ImportError:
        print("lenstronomy not installed (dev extra): no baseline")
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for chunk in (8, 32):
            spec = RenderSpec(chunk_size=chunk)
            results[f"lenscal_cpu_{threads}thread_chunk{chunk}"] = rate(
                lambda s=spec: render_arcs(params, s), args.n
            )
    if torch.cuda.is_available():
        for batch in (256, 2048):
            gpu_params = random_params(batch, seed=1).to("cuda")
            spec = RenderSpec(chunk_size=batch)
            results[f"lenscal_cuda_batch{batch}"] = rate(
                lambda p=gpu_params, s=spec: render_arcs(p, s), batch, 3, torch.cuda.synchronize
            )
    import tempfile

    from lenscal.mock import make_mock_survey

    torch.set_num_threads(cores)
    with tempfile.TemporaryDirectory() as tmp:
        report = make_mock_survey(tmp, n=args.mock_n, seed=0, positive_fraction=0.1, progress=False)
        results[f"mock_survey_cutouts_per_s_{cores}cores"] = args.mock_n / report.seconds
    base = results.get("lenstronomy_1core")
    print(f"{'engine':36s} {'injections/s':>14s} {'x lenstronomy/core':>20s}")
    for key, value in results.items():
        per_core = value / (int(key.split("_")[2].removesuffix("thread")) if "thread" in key else 1)
        ratio = f"{per_core / base:20.1f}" if base and key.startswith("lenscal_cpu") else ""
        print(f"{key:36s} {value:14,.1f} {ratio}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
