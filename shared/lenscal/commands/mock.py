"""`lenscal mock-survey`: the embedded DR10-like sample."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lenscal.commands.data import Scheme

app = typer.Typer()


class CutoutFormat(StrEnum):
    fits = "fits"
    npz = "npz"


@app.command("mock-survey")
def mock_survey(
    out: Annotated[Path, typer.Option(help="Output directory.")],
    n: Annotated[int, typer.Option(help="Number of cutouts.", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same bytes.")] = 0,
    positive_fraction: Annotated[
        float, typer.Option(help="Fraction of lenses (label 1).", min=0, max=1)
    ] = 0.05,
    fmt: Annotated[
        CutoutFormat, typer.Option("--format", help="Cutout files: Legacy Survey FITS or team NPZ.")
    ] = (CutoutFormat.fits),
    scheme: Annotated[
        Scheme, typer.Option(help="HEALPix split scheme written into the manifest.")
    ] = Scheme.s70_30,
) -> None:
    """Write a DR10-like sample offline: Tractor-like catalogue, cutouts with per-band PSF and
    depth noise, neighbours, stars, hard confusers (N2) and lenses (Tier A/B), a manifest, a gallery."""
    from lenscal.mock import make_mock_survey

    report = make_mock_survey(
        out,
        n=n,
        seed=seed,
        positive_fraction=positive_fraction,
        fmt=fmt.value,
        split_scheme=scheme.value,
        progress=sys.stderr.isatty(),
    )
    typer.echo(
        f"{report.n} cutouts ({report.positives} lenses, {report.confusers} hard confusers) in "
        f"{report.seconds:.1f} s -> {report.manifest}; gallery {report.gallery}"
    )
