"""`make demo`: the main job on embedded defaults, on a machine with nothing configured.

1. a mock DR10-like survey, packed into shards, its split checked (lenscal.demo);
2. the flows' defaults pointed at it ($LENSCAL_HOME/flows.yaml: shards, model demo_resnet,
   results under the output directory), so `lenscal run D05 --watch` works afterwards;
3. a local Prefect server (SQLite in $LENSCAL_HOME/prefect) and a process worker;
4. ``train/demo_resnet``: the 195K ResNet trained briefly and exported (a trained run is
   reused);
5. ``diagnostic/D05`` at the demo preset through its deployment; the flow starts the scorer
   and injector services for itself (no endpoints configured) and stops them after;
6. EXPERIMENT_REGISTRY.md rendered from the registry; where everything is, printed.

A second run reuses the data, the trained model and D05's finished steps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lenscal.errors import LenscalError
from lenscal.ui.roots import result_url
from lenscal_flows.settings import FlowSettings, settings_path, write_settings

DEMO_MODEL = "demo_resnet"


def run_demo(
    out: Path, *, n: int = 2000, seed: int = 0, echo: Callable[[str], Any] = print
) -> dict[str, Any]:
    from lenscal.demo.run import prepare_demo_data
    from lenscal.registry.markdown import render_markdown
    from lenscal.registry.store import Registry
    from lenscal_flows.deployments import register
    from lenscal_flows.local import prefect_server, prefect_worker
    from lenscal_flows.submit import submit, watch

    started = time.perf_counter()
    out = out.resolve()
    summary_path = out / "summary.json"
    if summary_path.is_file() and (out / "shards" / "manifest.parquet").is_file():
        summary = json.loads(summary_path.read_text())
        echo(f"[1/5] mock survey and shards: reused ({out / 'shards'})")
    else:
        echo(f"[1/5] mock survey ({n} cutouts), shards, split check -> {out}")
        summary = prepare_demo_data(out, n=n, seed=seed, progress=False)
    _check_model_reusable(out)
    settings = FlowSettings(
        hosts=str(out / "shards"), model=DEMO_MODEL, results=str(out / "results"), device="cpu"
    )
    echo(f"[2/5] flow defaults -> {write_settings(settings)}")
    timings: dict[str, float] = {}
    with prefect_server() as url:
        echo(f"[3/5] Prefect server {url}; registering deployments; starting a worker")
        register()
        with prefect_worker():
            for label, (name, parameters) in {
                "[4/5] train/demo_resnet": ("train/demo_resnet", {"config": DEMO_MODEL}),
                "[5/5] diagnostic/D05 (demo preset)": (
                    "diagnostic/D05",
                    {"definition": "D05", "preset": "demo"},
                ),
            }.items():
                t0 = time.perf_counter()
                echo(f"{label}: submitting")
                run = submit(name, parameters)
                state, _ = watch(run.id, echo=lambda line: echo(f"    {line}"))
                timings[name] = round(time.perf_counter() - t0, 1)
                if state != "COMPLETED":
                    raise LenscalError(
                        f"{name} ended {state}; see the log above and {settings_path().parent / 'prefect'}"
                    )
    registry_md = out / "EXPERIMENT_REGISTRY.md"
    registry_md.write_text(render_markdown(Registry()))
    runs = sorted((out / "results").glob("D05_*_demo"), key=lambda p: p.stat().st_mtime)
    report = runs[-1] / "report.md"
    summary["diagnostic/D05"] = str(runs[-1])
    summary["train/demo_resnet"] = str(out / "results" / "runs" / DEMO_MODEL / "best")
    wall = round(time.perf_counter() - started, 1)
    summary["demo_seconds"] = {"total": wall, **timings}
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    results = report.parent
    echo("")
    echo(f"done in {wall:.0f} s. Read first: {report}")
    echo(f"  tables: {results}/*/*.csv   figures: {results}/*/*.png")
    echo(f"  the model: {summary['train/demo_resnet']}   the registry: {registry_md}")
    echo("  again, against the same data and model:  lenscal run D05 --param preset=demo --watch")
    ui = "http://127.0.0.1:8765"
    summary["ui"] = result_url(ui, out / "results", results)
    echo(f"  see it all in a browser:  lenscal ui --results {out / 'results'}")
    echo(f"    then open {summary['ui']}  (the registry: {ui}/registry)")
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _check_model_reusable(out: Path) -> None:
    """Before any server starts: the train flow's own reuse check (lenscal.jobs.train
    .trained_bundle) on the demo's model, so a demo model the registry has Trained whose
    bundle is gone (demo-output deleted, ~/.lenscal kept) stops here in one line."""
    from lenscal.jobs.train import train_job, trained_bundle
    from lenscal.registry.ids import RegistryError
    from lenscal.registry.store import Registry

    job = train_job(
        config=DEMO_MODEL, preset="demo", run_id=DEMO_MODEL, out_dir=out / "results" / "runs" / DEMO_MODEL
    )
    try:
        trained_bundle(job, Registry())
    except RegistryError as exc:
        raise LenscalError(
            f"{exc}; or start from nothing with a fresh home: LENSCAL_HOME=$(mktemp -d) make demo"
        ) from None
