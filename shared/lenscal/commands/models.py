"""`lenscal export-onnx`: commands over checkpoint bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command("export-onnx")
def export_onnx_command(bundle: Annotated[Path, typer.Argument(help="Checkpoint bundle directory.")]) -> None:
    """Write BUNDLE/model.onnx (dynamic batch; logits and embeddings) after a parity check with torch."""
    from lenscal.models.bundle import export_onnx

    typer.echo(f"wrote {export_onnx(bundle)} (ONNX Runtime logits within 1e-4 x max(1, |logit|) of torch)")


models_app = typer.Typer(
    name="models", help="Bring weights in from files you have (never from the network).", no_args_is_help=True
)
app.add_typer(models_app)


@models_app.command("import-weights")
def import_weights_command(
    file: Annotated[Path, typer.Argument(help="ImageNet weights: .pth/.pt (state dict) or .safetensors.")],
    arch: Annotated[str, typer.Option(help="Architecture the weights are for.")],
) -> None:
    """Check ImageNet weights against ARCH's backbone and store them where
    `train.pretrained: true` finds them ($LENSCAL_PRETRAINED_DIR/<arch>.safetensors)."""
    from lenscal.models.imports import import_weights

    typer.echo(f"{file} -> {import_weights(file, arch)}")


@models_app.command("import-checkpoint")
def import_checkpoint_command(
    checkpoint: Annotated[
        Path, typer.Argument(help="A team checkpoint (torch.save of a dict with 'model').")
    ],
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")],
    arch: Annotated[
        str | None, typer.Option(help="Architecture of the checkpoint; default: its train.arch.")
    ] = None,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help="Preprocessing kind (raw_robust, residual_radial_profile); default: what the file records."
        ),
    ] = None,
    annulus: Annotated[str | None, typer.Option(help="Annulus 'r_in,r_out' in px (default 20,32).")] = None,
    clip_range: Annotated[float, typer.Option(help="Clip range after normalising.")] = 10.0,
    crop_size: Annotated[int, typer.Option(help="Central crop in px (the team's default 64).")] = 64,
    no_crop: Annotated[bool, typer.Option("--no-crop", help="The model saw whole 101x101 cutouts.")] = False,
    run_id: Annotated[str | None, typer.Option(help="Registry ID the bundle carries (e.g. gen4).")] = None,
) -> None:
    """Turn a team checkpoint into a lenscal bundle (weights loaded safely, keys mapped,
    PreprocessSpec, ONNX parity-checked export) that `lenscal serve scorer` serves."""
    from lenscal.models.imports import import_checkpoint
    from lenscal.preprocess import ANNULUS_GEN1_4, PreprocessSpec

    spec = None
    if preprocess is not None:
        r_in, r_out = ANNULUS_GEN1_4
        if annulus:
            try:
                r_in, r_out = (float(v) for v in annulus.split(","))
            except ValueError:
                raise typer.BadParameter(f"--annulus {annulus!r}: give 'r_in,r_out' in pixels") from None
        spec = PreprocessSpec(
            kind=preprocess,
            annulus_r_in=r_in,
            annulus_r_out=r_out,
            clip_range=clip_range,
            crop_size=None if no_crop else crop_size,
        )
    bundle = import_checkpoint(checkpoint, arch, out, spec=spec, run_id=run_id)
    typer.echo(f"{checkpoint} -> {bundle} (serve it with `lenscal serve scorer --model {bundle}`)")
