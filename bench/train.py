"""Training input and step throughput.

    .venv/bin/python bench/train.py [--n 6000]

1. Loader: cutouts/s with ONE worker, from packed shards (lenscal's loader: one reader
   thread, whole-batch reads) vs one NPZ file per cutout (the team's loader: a DataLoader
   worker process, np.load per item, default collate), same cutouts, same run; warm page
   cache and cold (evicted).
2. The 195K BottleneckedResNet training step on this machine's CPU (images/s), bare and end
   to end through lenscal's loader, preprocessing and augmentation.
3. On CUDA (when present): EfficientNetV2-S bf16 channels_last, bare step vs end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shards import evict, make_npz_set

from lenscal.data.ingest import ingest
from lenscal.data.shards import ShardReader
from lenscal.models import create_model
from lenscal.preprocess import PreprocessSpec, preprocess
from lenscal.rng import training_generator
from lenscal.training.augment import augment
from lenscal.training.config import AugmentConfig
from lenscal.training.data import SplitData, make_loader


class NpzPerFile(Dataset[tuple[torch.Tensor, float]]):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, float]:
        with np.load(self.paths[i]) as npz:
            return torch.from_numpy(np.ascontiguousarray(npz["cutout"].transpose(2, 0, 1))), 0.0


def drain(loader: DataLoader, limit: int) -> float:  # type: ignore[type-arg]
    seen, t0 = 0, time.perf_counter()
    for batch in loader:
        images = batch["images"] if isinstance(batch, dict) else batch[0]
        seen += images.shape[0]
        if seen >= limit:
            break
    return seen / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("bench/out/train.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lenscal-train-bench-"))
    results: dict[str, float] = {}
    try:
        manifest = make_npz_set(work / "npz", args.n, seed=0)
        ingest(manifest, work / "shards", dtype="float16", progress=False)
        reader = ShardReader(work / "shards")
        rows = np.arange(args.n)
        split = SplitData(rows=rows, labels=np.zeros(args.n, np.float32), weights=np.ones(args.n, np.float32),
                          tiers=np.full(args.n, -1, np.int8))  # fmt: skip
        paths = [str(work / "npz" / p) for p in pd.read_parquet(manifest).cutout_path]
        npz_files = [Path(p) for p in paths]
        shard_files = sorted((work / "shards").glob("shard-*.npy"))
        for cache in ("warm", "cold"):
            if cache == "cold":
                evict(npz_files)
            npz_loader = DataLoader(NpzPerFile(paths), batch_size=args.batch, shuffle=True, num_workers=1,
                                    persistent_workers=False)  # fmt: skip
            drain(npz_loader, 512)  # warm-up / worker start
            if cache == "cold":
                evict(npz_files)
            results[f"loader_npz_per_file_1worker_{cache}"] = drain(npz_loader, args.n)
            if cache == "cold":
                evict(shard_files)
            loader, _ = make_loader(ShardReader(work / "shards"), split, args.batch, seed=0, shuffle=True,
                                    workers=1, pin=False)  # fmt: skip
            results[f"loader_shards_1worker_{cache}"] = drain(loader, args.n)
        torch.set_num_threads(os.cpu_count() or 1)
        model = create_model("bottlenecked_resnet")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        spec = PreprocessSpec()
        x = torch.randn(64, 3, 101, 101)
        y = torch.zeros(64)

        def step(images: torch.Tensor, labels: torch.Tensor) -> None:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        for _ in range(3):
            step(x, y)
        t0 = time.perf_counter()
        for _ in range(10):
            step(x, y)
        results["resnet195k_cpu_bare_step_images_per_s"] = 10 * 64 / (time.perf_counter() - t0)
        loader, _ = make_loader(reader, split, 64, seed=0, shuffle=True, workers=1, pin=False, max_batches=10)
        seen, t0 = 0, time.perf_counter()
        for i, batch in enumerate(loader):
            images = augment(preprocess(batch["images"].float(), spec), AugmentConfig(hflip=True, vflip=True,
                             rot90=True), training_generator(0, "augment", 0, i))  # fmt: skip
            step(images, batch["labels"])
            seen += images.shape[0]
        results["resnet195k_cpu_end_to_end_images_per_s"] = seen / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'measure':46s} {'per s':>12s}")
    for key, value in results.items():
        print(f"{key:46s} {value:12,.0f}")
    for cache in ("warm", "cold"):
        ratio = results[f"loader_shards_1worker_{cache}"] / results[f"loader_npz_per_file_1worker_{cache}"]
        print(f"shards / NPZ-per-file loader, {cache}: {ratio:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
