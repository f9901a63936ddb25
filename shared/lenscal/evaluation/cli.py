"""`lenscal evaluate`: a model (in-process or on a scorer) on a manifest split, recorded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.device import DEVICE_HELP

app = typer.Typer()


@app.command("evaluate")
def evaluate_command(
    model: Annotated[
        str, typer.Option(help="Checkpoint bundle directory (or, with --scorer, a model name on it).")
    ],
    manifest: Annotated[Path, typer.Option(help="Manifest with split, label (and tier) columns.")],
    out: Annotated[Path, typer.Option(help="Results directory.")],
    split: Annotated[str, typer.Option(help="Split to score.")] = "val",
    shards: Annotated[
        Path | None, typer.Option(help="Shard directory (default: packed next to the manifest).")
    ] = None,
    scorer: Annotated[
        list[str] | None, typer.Option(help="Scorer host:port to score on (repeat for replicas).")
    ] = None,
    device: Annotated[str, typer.Option(help=f"In-process: {DEVICE_HELP}.")] = "auto",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for AUC/pAUC intervals.", min=0)] = 1000,
    run_id: Annotated[str | None, typer.Option(help="Record as this evaluation ID (E<NN>-<suffix>).")] = None,
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """AUC, pAUC, ECE, recall/FPR per tier at fixed and FPR-derived thresholds, bootstrap intervals,
    ROC and reliability plots, metrics.json."""
    from lenscal.backends import open_scorer
    from lenscal.data.ingest import open_reader
    from lenscal.evaluation.evaluate import evaluate
    from lenscal.registry.ids import check_id
    from lenscal.registry.runs import recorded_run
    from lenscal.registry.store import Registry

    if run_id is not None:
        check_id("evaluation", run_id)  # before any work
    interactive = sys.stderr.isatty()
    reader = open_reader(shards=shards) if shards else open_reader(manifest=manifest, progress=interactive)
    on_server = bool(scorer)
    opened = open_scorer(endpoints=scorer) if on_server else open_scorer(model=model, device=device)
    with opened:
        opened.wait_ready()
        info = opened.model_info(model if on_server else "")[0]
        registry = Registry(registry_url) if run_id else None
        with recorded_run(
            registry, run_id, kind="evaluation", results_dir=out, parents=[(info.model_id, "checkpoint")]
        ):
            result = evaluate(
                opened,
                reader,
                out,
                model=info.name,
                split=split,
                bootstrap=bootstrap,
                progress=interactive,
            )
    m = result.metrics
    typer.echo(
        f"{split}: AUC {m['auc']:.4f}  pAUC {m['pauc']:.4f}  ECE {m['ece']:.4f}  "
        f"recall@FPR1e-3 {m['recall_at_fpr_1e-3']}  -> {out / 'metrics.json'}"
    )
