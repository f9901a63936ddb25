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
