"""Every GPU figure lenscal claims, measured in one command on a lent GPU machine (`make
bench-gpu`, under 8 minutes on one H100/H200), written to one JSON (bench/out/gpu.json) and a
rates file for `lenscal plan` (bench/out/rates-gpu.json).

    .venv/bin/python bench/gpu.py [--out bench/out/gpu.json] [--budget-s 450]
    .venv/bin/python bench/gpu.py --check      # any machine: every row at toy sizes on the CPU

Rows (each with its own time budget; a row that cannot run says why, nothing is estimated):
  model_effnet_bf16_eager / _compiled   EfficientNetV2-S, bf16 autocast, channels_last, batch 1024
  model_resnet195k_bf16                 the 195K BottleneckedResNet, same settings
  engine_torch_raw / engine_onnx_cuda   the scorer's engines on raw cutouts (preprocessing
                                        included), 195K ResNet: torch bf16 vs ONNX Runtime CUDA
  preprocess_cuda                       lenscal.preprocess alone on the device
  scorer_grpc_k{1,2,4}                  `lenscal serve scorer --workers K` (EfficientNetV2-S, torch
                                        bf16) fed from shards by 8 client processes, float16 streams
  inject_cuda_batch{256,2048}           arc renders/s
  train_effnet_bf16_from_shards         training images/s, batches read from shards
  grid_d05_110k                         the D05 grid, 110,000 injections, in-process end to end
  projected_43m                         43M cutouts from the best measured end-to-end rate
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench.survey (hard-linked surveys), tests.lenstronomy_reference
N_43M = 43_000_000


class Skip(Exception):
    """A row that cannot run here; the message says why."""


def timed_rate(step: Callable[[], int], seconds: float, warmup: int, sync: Callable[[], None]) -> float:
    for _ in range(warmup):
        step()
    sync()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    sync()
    return done / (time.perf_counter() - start)


class Suite:
    def __init__(self, check: bool, budget_s: float, work: Path, out: Path | None = None) -> None:
        self.check, self.budget_s, self.work, self.out = check, budget_s, work, out
        self.only: list[str] | None = None
        self.device = torch.device("cpu" if check else "cuda")
        self.batch = 8 if check else 1024
        self.seconds = 0.5 if check else 8.0
        self.rows: dict[str, dict[str, Any]] = {}
        self.started = time.perf_counter()
        self.sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)

    def row(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if self.only is not None and name not in self.only:
            return
        left = self.budget_s - (time.perf_counter() - self.started)
        t0 = time.perf_counter()
        if left <= 0:
            self.rows[name] = {"status": "skipped", "reason": f"suite budget of {self.budget_s:.0f} s spent"}
        else:
            try:
                self.rows[name] = {"status": "measured", **fn()}
            except Skip as why:
                self.rows[name] = {"status": "skipped", "reason": str(why)}
            except Exception as exc:  # recorded, and the suite goes on
                self.rows[name] = {
                    "status": "failed",
                    "reason": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-2000:],
                }
        self.rows[name]["row_s"] = round(time.perf_counter() - t0, 1)
        print(
            f"{name:34s} {json.dumps({k: v for k, v in self.rows[name].items() if k != 'traceback'})}",
            flush=True,
        )
        if self.out is not None:  # rows so far: a run stopped at a lease's limit keeps them
            self.out.parent.mkdir(parents=True, exist_ok=True)
            partial = {"device": _device_name(self), "complete": False, "rows": self.rows}
            self.out.with_suffix(".partial.json").write_text(json.dumps(partial, indent=1) + "\n")

    # --- rows ---------------------------------------------------------------------------

    def model(self, arch: str, compiled: bool) -> dict[str, Any]:
        from lenscal.models import create_model
        from lenscal.models.predict import autocast_for

        torch.manual_seed(0)
        model = create_model(arch).to(self.device).eval().to(memory_format=torch.channels_last)
        forward = torch.compile(model) if compiled else model
        x = torch.randn(self.batch, 3, 101, 101, device=self.device).contiguous(
            memory_format=torch.channels_last
        )

        @torch.no_grad()
        def step() -> int:
            with autocast_for(self.device, True):
                forward(x)
            return self.batch

        t0 = time.perf_counter()
        step()
        self.sync()
        first = time.perf_counter() - t0
        rate = timed_rate(step, self.seconds, 2, self.sync)
        return {"images_per_s": rate, "batch": self.batch, "first_call_s": first, "dtype": "bf16"}

    def bundle(self, arch: str) -> Path:
        from lenscal.models import create_model
        from lenscal.models.bundle import export_onnx, save_bundle
        from lenscal.preprocess import ANNULUS_GEN5, PreprocessSpec

        path = self.work / f"bundle-{arch}"
        if not (path / "model.raw.onnx").is_file():
            torch.manual_seed(0)
            save_bundle(
                path,
                create_model(arch),
                arch=arch,
                arch_kwargs={},
                spec=PreprocessSpec.for_annulus(ANNULUS_GEN5),
                run_id=f"bench_{arch}",
            )
            export_onnx(path)
        return path

    def engine(self, kind: str) -> dict[str, Any]:
        from lenscal.errors import LenscalError
        from lenscal.scoring.engines import make_engine

        try:
            engine = make_engine(kind, str(self.bundle("bottlenecked_resnet")), str(self.device))
        except LenscalError as exc:
            raise Skip(str(exc)) from None
        if kind == "onnx" and not self.check and engine.device != "cuda":
            raise Skip("ONNX Runtime has no CUDA provider here (install onnxruntime-gpu)")
        raw = np.random.default_rng(0).normal(0, 0.01, (self.batch, 3, 101, 101)).astype(np.float16)

        def step() -> int:
            engine.infer(raw, engine.bundle.spec, False)
            return self.batch

        return {
            "cutouts_per_s": timed_rate(step, self.seconds, 2, self.sync),
            "engine": engine.name,
            "device": engine.device,
            "input": "raw float16, preprocessing included",
        }

    def preprocess(self) -> dict[str, Any]:
        from lenscal.preprocess import ANNULUS_GEN5, PreprocessSpec, preprocess

        spec = PreprocessSpec.for_annulus(ANNULUS_GEN5)
        x = torch.randn(self.batch, 3, 101, 101, device=self.device) * 0.01

        def step() -> int:
            preprocess(x, spec)
            return self.batch

        return {"cutouts_per_s": timed_rate(step, self.seconds, 2, self.sync)}

    def survey(self, n: int) -> Path:
        from bench.survey import build_survey

        return build_survey(self.work / "survey", n, min(n, 8192))

    def scorer_grpc(self, workers: int) -> dict[str, Any]:
        from lenscal.rpc.launch import running_service

        arch = "bottlenecked_resnet" if self.check else "efficientnet_v2_s"
        survey = self.survey(2048 if self.check else 400_000)
        clients = 2 if self.check else 8
        args = [
            "--model",
            str(self.bundle(arch)),
            "--device",
            str(self.device),
            "--engine",
            "torch",
            "--workers",
            str(workers),
            "--max-batch-size",
            str(self.batch),
        ]
        with running_service("scorer", *args, timeout_s=300, port=_free_port()) as (endpoint, _):
            ctx = mp.get_context("spawn")
            queue: mp.Queue[float] = ctx.Queue()
            procs = [
                ctx.Process(target=_client, args=(endpoint, str(survey), i, clients, self.seconds * 2, queue))
                for i in range(clients)
            ]
            for p in procs:
                p.start()
            counts = [queue.get(timeout=600) for _ in procs]
            for p in procs:
                p.join()
        return {
            "cutouts_per_s": sum(counts),
            "workers": workers,
            "clients": clients,
            "model": arch,
            "wire": "float16, ScoreStream, 64 cutouts per message",
            "source": "shards (read_range)",
        }

    def inject(self, batch: int) -> dict[str, Any]:
        from lenscal.physics import RenderSpec, render_arcs
        from tests.lenstronomy_reference import random_params

        batch = min(batch, 16) if self.check else batch
        params = random_params(batch, seed=1).to(str(self.device))
        spec = RenderSpec(chunk_size=batch)

        def step() -> int:
            render_arcs(params, spec)
            return batch

        return {"injections_per_s": timed_rate(step, self.seconds, 1, self.sync), "batch": batch}

    def train(self) -> dict[str, Any]:
        import torch.nn.functional as F

        from lenscal.data.shards import ShardReader
        from lenscal.models import create_model
        from lenscal.models.predict import autocast_for
        from lenscal.preprocess import ANNULUS_GEN5, PreprocessSpec, preprocess

        arch = "bottlenecked_resnet" if self.check else "efficientnet_v2_s"
        batch = 8 if self.check else 256
        reader = ShardReader(self.survey(2048 if self.check else 400_000))
        spec = PreprocessSpec.for_annulus(ANNULUS_GEN5)
        torch.manual_seed(0)
        model = create_model(arch).to(self.device).train().to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        labels = torch.zeros(batch, device=self.device)

        def step() -> int:
            start = int(rng.integers(0, len(reader) - batch))
            x = torch.from_numpy(reader.read_range(start, start + batch)).to(self.device, non_blocking=True)
            x = preprocess(x.float(), spec).contiguous(memory_format=torch.channels_last)
            with autocast_for(self.device, True):
                loss = F.binary_cross_entropy_with_logits(model(x).float(), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return batch

        return {
            "images_per_s": timed_rate(step, self.seconds, 3, self.sync),
            "batch": batch,
            "model": arch,
            "dtype": "bf16 autocast",
            "source": "shards (read_range), preprocess on the device",
        }

    def grid(self) -> dict[str, Any]:
        from bench.grid import make_world, one_run
        from lenscal.backends import open_injector, open_scorer
        from lenscal.selection.config import load_grid

        cells = len(load_grid("d05", per_cell=1).cells())
        per_cell = 2 if self.check else -(-110_000 // cells)
        config = load_grid("mock_demo" if self.check else "d05", per_cell=per_cell)
        arch = "bottlenecked_resnet" if self.check else "efficientnet_v2_s"
        shards, bundle = make_world(self.work / "grid", arch, 300 if self.check else 3000)
        with (
            open_scorer(model=bundle, engine="torch", device=str(self.device)) as scorer,
            open_injector(device=str(self.device)) as injector,
        ):
            t = one_run(config, shards, self.work / "grid-out", scorer, injector, 64 if self.check else 4096)
        return {
            "injections": t["injections_scored"],
            "end_to_end_s": t["end_to_end_s"],
            "injections_per_s": t["injections_per_s"],
            "timings": t,
            "model": arch,
        }


def _free_port() -> int:
    """A port to give a K-worker scorer (its workers share one explicit port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client(endpoint: str, survey: str, index: int, clients: int, seconds: float, queue: Any) -> None:
    """One client process: its slice of the survey's rows, read from shards, streamed."""
    from lenscal.data.shards import ShardReader
    from lenscal.rpc.scorer_client import GrpcScorer

    reader = ShardReader(survey)
    share = len(reader) // clients
    start, stop = index * share, (index + 1) * share
    done = 0
    with GrpcScorer(endpoint, streaming=True, concurrency=4, per_message=64) as scorer:
        scorer.wait_ready()
        scorer.score(reader.read_range(start, start + 256))  # warm
        t0 = time.perf_counter()
        row = start
        while time.perf_counter() - t0 < seconds:
            end = min(stop, row + 4096)
            scorer.score(reader.read_range(row, end))
            done += end - row
            row = end if end < stop else start
        queue.put(done / (time.perf_counter() - t0))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="toy sizes on the CPU: exercise every row")
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole suite's time budget")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "gpu.json")
    parser.add_argument("--only", nargs="*", default=None, help="run only these rows (a rerun of one)")
    args = parser.parse_args()
    if not args.check and not torch.cuda.is_available():
        report = {"device": "none", "rows": {"all": {"status": "skipped", "reason": "no CUDA device here"}}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print("no CUDA device: nothing measured (use --check to exercise the rows on the CPU)")
        return
    with tempfile.TemporaryDirectory(prefix="lenscal-bench-gpu-") as tmp:
        suite = Suite(args.check, args.budget_s, Path(tmp), args.out)
        suite.only = args.only
        suite.row("model_resnet195k_bf16", lambda: suite.model("bottlenecked_resnet", False))
        suite.row("model_effnet_bf16_eager", lambda: suite.model("efficientnet_v2_s", False))
        suite.row("preprocess_device", suite.preprocess)
        suite.row("engine_torch_raw", lambda: suite.engine("torch"))
        suite.row("engine_onnx_cuda", lambda: suite.engine("onnx"))
        suite.row("inject_batch256", lambda: suite.inject(256))
        suite.row("inject_batch2048", lambda: suite.inject(2048))
        for k in (1, 2, 4):
            suite.row(f"scorer_grpc_k{k}", lambda k=k: suite.scorer_grpc(k))
        suite.row("train_effnet_bf16_from_shards", suite.train)
        suite.row("grid_d05_110k", suite.grid)
        suite.row("model_effnet_bf16_compiled", lambda: suite.model("efficientnet_v2_s", True))
        rows = suite.rows
        best = max(
            (
                r["cutouts_per_s"]
                for n, r in rows.items()
                if n.startswith("scorer_grpc") and "cutouts_per_s" in r
            ),
            default=None,
        )
        rows["projected_43m"] = (
            {
                "status": "measured",
                "hours": N_43M / best / 3600,
                "from_cutouts_per_s": best,
                "basis": "best scorer_grpc_k* row, one device",
            }
            if best
            else {"status": "skipped", "reason": "no end-to-end scorer row was measured"}
        )
        read = _read_rate(suite) if suite.only is None else None
        rates = {
            "device": _device_name(suite),
            "source": "bench/gpu.py" + (" --check (toy sizes, CPU: not a measurement)" if args.check else ""),
            "stages": {
                k: v
                for k, v in {
                    "read": {"cutouts_per_s": read, "per": "process"} if read else None,
                    "wire": {
                        "cutouts_per_s": best,
                        "per": "replica",
                        "note": "end-to-end gRPC incl. the model: a lower bound on transport",
                    }
                    if best
                    else None,
                    "preprocess": _stage(rows.get("preprocess_device"), "cutouts_per_s"),
                    "model": _stage(rows.get("model_effnet_bf16_eager"), "images_per_s"),
                }.items()
                if v is not None
            },
        }
    report = {
        "device": _device_name(suite),
        "machine": f"{platform.node()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "check_mode": args.check,
        "suite_s": round(time.perf_counter() - suite.started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    (args.out.parent / ("rates-gpu-check.json" if args.check else "rates-gpu.json")).write_text(
        json.dumps(rates, indent=1) + "\n"
    )
    print(f"wrote {args.out} ({report['suite_s']} s)")


def _stage(row: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if not row or key not in row:
        return None
    return {"cutouts_per_s": row[key], "per": "gpu"}


def _read_rate(suite: Suite) -> float | None:
    with contextlib.suppress(Exception):
        from lenscal.data.shards import ShardReader

        reader = ShardReader(suite.survey(2048 if suite.check else 400_000))
        n = min(len(reader), 100_000)
        t0 = time.perf_counter()
        for s in range(0, n, 4096):
            reader.read_range(s, min(n, s + 4096))
        return n / (time.perf_counter() - t0)
    return None


def _device_name(suite: Suite) -> str:
    return torch.cuda.get_device_name(0) if suite.device.type == "cuda" else "CPU (check mode)"


if __name__ == "__main__":
    main()
