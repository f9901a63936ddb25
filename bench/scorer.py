"""Scorer throughput: the raw in-process engine vs end to end over gRPC, same model, same
batch size, same machine, same run.

    .venv/bin/python bench/scorer.py [--arch bottlenecked_resnet] [--clients 2] [--seconds 20]

In-process: TorchEngine.infer on raw float16 cutouts (preprocessing included, as the server
does it) in batches of --batch. End to end: `lenscal serve scorer` (max batch --batch) and
M client processes, each keeping --inflight messages of --per-message float16 cutouts in
flight. Then p50/p99 latency of one 64-cutout message at light load (one client, one at a
time). On CUDA (--device cuda) the same, plus --workers for K ingest processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch


def make_bundle(directory: Path, arch: str) -> Path:
    from lenscal.models import create_model
    from lenscal.models.bundle import save_bundle
    from lenscal.preprocess import PreprocessSpec

    torch.manual_seed(0)
    return save_bundle(directory / arch, create_model(arch), arch=arch, arch_kwargs={}, spec=PreprocessSpec())


def cutouts(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(0, 0.01, (n, 3, 101, 101)).astype(np.float16)


def client_process(endpoint: str, seconds: float, per_message: int, inflight: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    import grpc

    from lenscal.rpc.arrays import encode_batch
    from lenscal.rpc.server import CHANNEL_OPTIONS
    from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

    stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS))
    request = scorer_pb2.ScoreRequest(batch=encode_batch(cutouts(per_message), dtype=np.float16))
    stub.Score(request, timeout=120)  # warm
    done = 0
    stop_at = time.monotonic() + seconds

    def worker() -> int:
        count = 0
        while time.monotonic() < stop_at:
            count += len(stub.Score(request, timeout=120).logits)
        return count

    started = time.monotonic()
    with ThreadPoolExecutor(inflight) as pool:
        done = sum(pool.map(lambda _: worker(), range(inflight)))
    queue.put((done, time.monotonic() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="bottlenecked_resnet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--per-message", type=int, default=64)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/scorer.json"))
    args = parser.parse_args()

    from lenscal.scoring.torch_engine import TorchEngine

    work = Path(tempfile.mkdtemp(prefix="lenscal-scorer-bench-"))
    bundle = make_bundle(work, args.arch)
    engine = TorchEngine(str(bundle), args.device)
    batch = cutouts(args.batch)
    engine.infer(batch, engine.bundle.spec, False)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds / 2:
        engine.infer(batch, engine.bundle.spec, False)
        n += args.batch
    in_process = n / (time.perf_counter() - t0)
    del engine

    command = [
        sys.executable,
        "-m",
        "lenscal.cli",
        "serve",
        "scorer",
        "--model",
        str(bundle),
        "--device",
        args.device,
        "--max-batch-size",
        str(args.batch),
        "--workers",
        str(args.workers),
        "--port",
        "0" if args.workers == 1 else "50391",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    endpoint = None
    assert server.stdout is not None
    while endpoint is None:
        line = server.stdout.readline()
        if not line and server.poll() is not None:
            raise SystemExit("server failed to start")
        found = re.search(r"listening on (\S+:\d+)", line)
        endpoint = found.group(1) if found else None
    time.sleep(2 if args.workers > 1 else 0)
    try:
        context = mp.get_context("spawn")
        queue: mp.Queue = context.Queue()  # type: ignore[type-arg]
        clients = [
            context.Process(
                target=client_process, args=(endpoint, args.seconds, args.per_message, args.inflight, queue)
            )
            for _ in range(args.clients)
        ]
        for c in clients:
            c.start()
        totals = [queue.get() for _ in clients]
        for c in clients:
            c.join()
        end_to_end = sum(count for count, _ in totals) / max(seconds for _, seconds in totals)

        import grpc

        from lenscal.rpc.arrays import encode_batch
        from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        request = scorer_pb2.ScoreRequest(batch=encode_batch(cutouts(64), dtype=np.float16))
        latencies = []
        for _ in range(60):
            t = time.perf_counter()
            stub.Score(request, timeout=60)
            latencies.append(time.perf_counter() - t)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    results = {
        "arch": args.arch,
        "device": args.device,
        "cpu_cores": os.cpu_count(),
        "in_process_cutouts_per_s": in_process,
        "end_to_end_cutouts_per_s": end_to_end,
        "ratio": end_to_end / in_process,
        "latency_64_p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "latency_64_p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "clients": args.clients,
        "workers": args.workers,
    }
    for key, value in results.items():
        print(f"{key:28s} {value:,.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
