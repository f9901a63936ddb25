"""`lenscal train`, `export-onnx`, `evaluate`: thin commands over lenscal.training,
lenscal.models.bundle and lenscal.evaluation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Option(help="Training YAML (the team's dataset/augment/train schema).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved config; touch no data.")
    ] = False,
    data_root: Annotated[
        Path | None, typer.Option(help="Directory replacing those of dataset paths.")
    ] = None,
    set_values: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (YAML value), repeatable.")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Registry ID (default train.run_id or the config name).")
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="Discard train.out_dir and start over instead of resuming.")
    ] = False,
    no_registry: Annotated[bool, typer.Option("--no-registry", help="Do not record the run.")] = False,
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """Train a finder: shards -> preprocess -> AMP training; resumes after a kill; records the run."""
    import logging

    from lenscal.training.config import load_config

    resolved = load_config(config, overrides=set_values, data_root=data_root)
    if dry_run:
        typer.echo(json.dumps(resolved.snapshot(), indent=2))
        typer.echo(
            f"config sha256 {resolved.sha256()}; preprocessing {resolved.dataset.preprocess_spec().to_json()}"
        )
        return
    from lenscal.registry.store import Registry
    from lenscal.training.loop import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = None if no_registry else Registry(registry_url)
    result = train(
        resolved,
        config_path=config,
        registry=registry,
        run_id=run_id,
        restart=restart,
        progress=sys.stderr.isatty(),
    )
    typer.echo(
        f"{result.run_id or 'run'}: best val AUC {result.best_val_auc:.4f} at epoch {result.best_epoch} "
        f"({result.epochs_run} epochs on {result.device}) -> {result.out_dir / 'best'}"
    )


@app.command("export-onnx")
def export_onnx_command(bundle: Annotated[Path, typer.Argument(help="Checkpoint bundle directory.")]) -> None:
    """Write BUNDLE/model.onnx (dynamic batch; logits and embeddings) after a parity check with torch."""
    from lenscal.models.bundle import export_onnx

    typer.echo(f"wrote {export_onnx(bundle)} (ONNX Runtime logits within 1e-4 x max(1, |logit|) of torch)")


@app.command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Option(help="Checkpoint bundle directory.")],
    manifest: Annotated[Path, typer.Option(help="Manifest with split, label (and tier) columns.")],
    out: Annotated[Path, typer.Option(help="Results directory.")],
    split: Annotated[str, typer.Option(help="Split to score.")] = "val",
    shards: Annotated[
        Path | None, typer.Option(help="Shard directory (default: packed next to the manifest).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for AUC/pAUC intervals.", min=0)] = 1000,
    run_id: Annotated[str | None, typer.Option(help="Record as this evaluation ID (E<NN>-<suffix>).")] = None,
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """AUC, pAUC, ECE, recall/FPR per tier at fixed and FPR-derived thresholds, bootstrap intervals,
    ROC and reliability plots, metrics.json."""
    from lenscal.evaluation.evaluate import evaluate

    result = evaluate(
        model,
        manifest,
        out,
        split=split,
        shards=shards,
        device=device,
        bootstrap=bootstrap,
        progress=sys.stderr.isatty(),
    )
    m = result.metrics
    typer.echo(
        f"{split}: AUC {m['auc']:.4f}  pAUC {m['pauc']:.4f}  ECE {m['ece']:.4f}  "
        f"recall@FPR1e-3 {m['recall_at_fpr_1e-3']}  -> {out / 'metrics.json'}"
    )
    if run_id:
        from lenscal.registry.store import Registry

        registry = Registry(registry_url)
        if not registry.exists(run_id):
            parents = [(m["model_id"], "checkpoint")] if registry.exists(m["model_id"]) else []
            registry.add("evaluation", run_id, parents=parents)
        registry.record_results(run_id, out)
        registry.set_status(run_id, "Complete")
