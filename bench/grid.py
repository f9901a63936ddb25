"""Selection-function grid throughput: injections scored per second, in-process vs through
the real injector and scorer services, same grid, same model, same machine, same run.

    .venv/bin/python bench/grid.py [--per-cell 40] [--arch bottlenecked_resnet] [--device auto]
    .venv/bin/python bench/grid.py --grid d05 --arch efficientnet_v2_s --device cuda --hosts SHARDS

Both runs go through `lenscal.selection.runner.run_grid` (the same code the CLI runs); only
the Scorer/Injector implementations differ. Time shares come from the runner's own stage
clocks: reading hosts, the injector call, the scorer call. In-process, the injector call is
rendering and the scorer call is the model (preprocessing included); through the services,
what either call takes beyond its in-process time is transport (encode, gRPC, decode,
queueing). The stages overlap (pipelined), so the shares add to more than the wall time;
"overlap" is their sum over the wall time. Without --hosts a mock survey is made and
ingested first (not timed). Writes JSON to bench/out/grid.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch


def make_world(directory: Path, arch: str, n_hosts: int) -> tuple[Path, Path]:
    from lenscal.data.ingest import ingest
    from lenscal.mock import make_mock_survey
    from lenscal.models import create_model
    from lenscal.models.bundle import export_onnx, save_bundle
    from lenscal.preprocess import PreprocessSpec

    survey = make_mock_survey(directory / "mock", n=n_hosts, seed=4, positive_fraction=0.1, progress=False)
    ingest(survey.manifest, directory / "shards", dtype="float16", progress=False)
    torch.manual_seed(0)
    bundle = save_bundle(
        directory / arch, create_model(arch), arch=arch, arch_kwargs={}, spec=PreprocessSpec(), run_id=arch
    )
    export_onnx(bundle)
    return directory / "shards", bundle


def one_run(config: Any, shards: Path, out: Path, scorer: Any, injector: Any, chunk: int) -> dict[str, float]:
    from lenscal.data.shards import ShardReader
    from lenscal.selection.runner import run_grid

    started = time.perf_counter()
    result = run_grid(
        config, hosts=ShardReader(shards), scorer=scorer, injector=injector, out=out, chunk_size=chunk,
        force_fpr=True, progress=True,
    )  # fmt: skip
    t = dict(result.meta["timings"])
    t["end_to_end_s"] = time.perf_counter() - started  # + negatives, tables, plots
    t["injections_per_s"] = t["injections_scored"] / t["wall_s"]
    t["overlap"] = (t["read_s"] + t["inject_s"] + t["score_s"]) / t["wall_s"]
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="mock_demo", help="grid name or YAML file")
    parser.add_argument("--per-cell", type=int, default=40)
    parser.add_argument("--arch", default="bottlenecked_resnet", help="195K-parameter ResNet by default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--hosts", type=Path, help="shards directory (default: a fresh mock survey)")
    parser.add_argument("--model", type=Path, help="bundle (default: a fresh --arch bundle)")
    parser.add_argument("--mock-hosts", type=int, default=600)
    parser.add_argument("--skip-services", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/out/grid.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from lenscal.backends import open_injector, open_scorer
    from lenscal.device import resolve_device
    from lenscal.rpc.launch import running_service
    from lenscal.selection.config import load_grid

    device = resolve_device(args.device).type
    config = load_grid(args.grid, per_cell=args.per_cell)
    with tempfile.TemporaryDirectory(prefix="lenscal-bench-grid-") as tmp:
        work = Path(tmp)
        shards, bundle = args.hosts, args.model
        if shards is None or bundle is None:
            made_shards, made_bundle = make_world(work, args.arch, args.mock_hosts)
            shards, bundle = shards or made_shards, bundle or made_bundle
        results: dict[str, Any] = {
            "grid": config.name, "per_cell": args.per_cell, "arch": args.arch, "device": device,
            "engine": args.engine, "chunk": args.chunk, "cores": len(os.sched_getaffinity(0)),
        }  # fmt: skip
        with (
            open_scorer(model=bundle, engine=args.engine, device=device) as scorer,
            open_injector(device=device) as injector,
        ):
            results["engine_used"] = scorer.model_info()[0].engine
            results["in_process"] = one_run(config, shards, work / "local", scorer, injector, args.chunk)
        if not args.skip_services:
            with (
                running_service("scorer", "--model", str(bundle), "--engine", args.engine, "--device", device)
                as (scorer_at, _),
                running_service("injector", "--device", device) as (injector_at, _),
                open_scorer(endpoints=[scorer_at]) as scorer,
                open_injector(endpoint=injector_at) as injector,
            ):  # fmt: skip
                scorer.wait_ready()
                injector.wait_ready()
                remote = one_run(config, shards, work / "services", scorer, injector, args.chunk)
            local = results["in_process"]
            remote["transport_s"] = max(0.0, remote["inject_s"] - local["inject_s"]) + max(
                0.0, remote["score_s"] - local["score_s"]
            )
            results["services"] = remote
            results["services_over_in_process"] = remote["injections_per_s"] / local["injections_per_s"]
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


def report(results: dict[str, Any]) -> None:
    print(f"\ngrid {results['grid']}, {results['arch']} on {results['device']} ({results['engine_used']}), "
          f"{results['cores']} cores, chunk {results['chunk']}")  # fmt: skip
    for name in ("in_process", "services"):
        if name not in results:
            continue
        t = results[name]
        shares = ", ".join(
            f"{label} {t[key]:.1f} s ({t[key] / t['wall_s']:.0%})"
            for label, key in (("read", "read_s"), ("inject", "inject_s"), ("score", "score_s"))
        )
        print(f"{name:>10}: {t['injections_scored']} injections in {t['wall_s']:.1f} s = "
              f"{t['injections_per_s']:.0f}/s; {shares}; overlap {t['overlap']:.2f}x")  # fmt: skip
        if "transport_s" in t:
            print(f"{'':>10}  transport (beyond in-process stage times) {t['transport_s']:.1f} s")
    if "services_over_in_process" in results:
        print(f"services / in-process throughput: {results['services_over_in_process']:.2f}x")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
