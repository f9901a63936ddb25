"""Preprocessing throughput (cutouts/s) of lenscal.preprocess on CPU (and CUDA when present).

    .venv/bin/python bench/preprocess.py [--batch 256] [--iters 20]

Baseline in the same run: the per-cutout numpy form of the same normalisation (np.median
over the annulus per band), which is what a loop over files would do.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lenscal.preprocess import ANNULUS_GEN5, PreprocessSpec, annulus_indices, preprocess


def numpy_per_cutout(batch: np.ndarray, spec: PreprocessSpec) -> None:
    idx = annulus_indices(101, 101, spec.annulus_r_in, spec.annulus_r_out, torch.device("cpu")).numpy()
    for cutout in batch:
        x = np.nan_to_num(cutout, nan=0.0).reshape(3, -1)
        ring = x[:, idx]
        med = np.median(ring, axis=1, keepdims=True)
        mad = np.median(np.abs(ring - med), axis=1, keepdims=True)
        np.clip((x - med) / mad, -spec.clip_range, spec.clip_range)


def rate(fn, n: int, iters: int, sync=lambda: None) -> float:
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return n * iters / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/out/preprocess.json"))
    args = parser.parse_args()
    spec = PreprocessSpec.for_annulus(ANNULUS_GEN5)
    batch = torch.randn(args.batch, 3, 101, 101) * 0.01
    results = {"numpy_per_cutout_cpu": rate(lambda: numpy_per_cutout(batch.numpy(), spec), args.batch, 3)}
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        results[f"torch_cpu_{threads}thread"] = rate(lambda: preprocess(batch, spec), args.batch, args.iters)
    if torch.cuda.is_available():
        gpu = batch.cuda()
        for b in (args.batch, 1024):
            g = gpu if b == args.batch else torch.randn(b, 3, 101, 101, device="cuda")
            results[f"torch_cuda_batch{b}"] = rate(
                lambda g=g: preprocess(g, spec), b, args.iters * 5, torch.cuda.synchronize
            )
    base = results["numpy_per_cutout_cpu"]
    print(f"{'path':28s} {'cutouts/s':>12s} {'x numpy':>8s}")
    for key, value in results.items():
        print(f"{key:28s} {value:12,.0f} {value / base:8.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"batch": args.batch, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
