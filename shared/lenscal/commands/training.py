"""`lenscal train`: a thin command over lenscal.training."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.commands.options import RegistryUrl

app = typer.Typer()


@app.command("train")
def train_command(
    config: Annotated[
        str,
        typer.Option(help="Training YAML (the team's dataset/augment/train schema) or a configs/train name."),
    ],
    preset: Annotated[
        str,
        typer.Option(help="full (the config as written) or one of its presets (demo: 3 short CPU epochs)."),
    ] = "full",
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
    registry: RegistryUrl = None,
) -> None:
    """Train a finder: shards -> preprocess -> AMP training; resumes after a kill; records the run."""
    import logging

    from lenscal.jobs.train import run_train_job, train_job

    job = train_job(
        config=config,
        preset=preset,
        overrides=list(set_values or []),
        data_root=data_root,
        run_id=run_id,
        record=not no_registry,
        restart=restart,
    )
    if dry_run:
        resolved = job.resolved()
        typer.echo(json.dumps(resolved.snapshot(), indent=2))
        spec = resolved.dataset.preprocess_spec()
        shape = "x".join(map(str, spec.output_shape((3, 101, 101))))
        crop = f"a central {spec.crop_size} px crop" if spec.crop_size else "the whole 101 px cutout"
        typer.echo(f"config sha256 {resolved.sha256()}; preprocessing {spec.to_json()}")
        typer.echo(
            f"network input {shape}: {crop} (dataset.crop / crop_size; the team's default is a 64 px crop)"
        )
        return
    logging.getLogger("lenscal.train").setLevel(logging.INFO)  # one line per epoch: the command's output
    result = run_train_job(job, registry_url=registry, progress=sys.stderr.isatty())
    typer.echo(
        f"{result.run_id or 'run'}: best val AUC {result.best_val_auc:.4f} at epoch {result.best_epoch} "
        f"({result.epochs_run} epochs on {result.device}) -> {result.out_dir / 'best'}"
    )
