"""`lenscal inject ...`: render arcs from a parameter file, draw parameters from a prior."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lenscal.device import DEVICE_HELP, resolve_device
from lenscal.errors import LenscalError

app = typer.Typer(
    name="inject", help="Render lensed arcs and draw injection parameters.", no_args_is_help=True
)


class Psf(StrEnum):
    gaussian = "gaussian"
    moffat = "moffat"


@app.command()
def render(
    params: Annotated[Path, typer.Option(help="JSON list of objects with the 19 arc parameters.")],
    out: Annotated[Path, typer.Option(help="Output .npy: (N, 3, H, W) float32 nanomaggies.")],
    oversample: Annotated[int, typer.Option(help="Sub-pixels per pixel side.", min=1, max=32)] = 4,
    psf: Annotated[Psf, typer.Option(help="PSF profile.")] = Psf.gaussian,
    moffat_beta: Annotated[float, typer.Option(help="Moffat beta.")] = 3.5,
    poisson_gain: Annotated[float | None, typer.Option(help="e-/nmgy; omit for noiseless arcs.")] = None,
    seed: Annotated[int, typer.Option(help="Noise seed (per-injection generators derive from it).")] = 0,
    size: Annotated[int, typer.Option(help="Stamp side, px.")] = 101,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Render noiseless (or Poisson-noised) arcs: keys theta_e, q_lens, phi_lens, lens_x, lens_y,
    gamma1, gamma2, src_x, src_y, r_e, n_sersic, q_src, phi_src, mag_g, mag_r, mag_z,
    psf_fwhm_g, psf_fwhm_r, psf_fwhm_z (arcsec, radians, AB mag)."""
    from lenscal.fsutil import atomic_path
    from lenscal.physics import ArcParams, RenderSpec, render_arcs

    try:
        records = json.loads(params.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LenscalError(f"{params}: unreadable parameter file ({exc})") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise LenscalError(f"{params}: expected a JSON list of objects, one per arc")
    spec = RenderSpec(
        size=size,
        oversample=oversample,
        psf=psf.value,
        moffat_beta=moffat_beta,
        poisson_gain=poisson_gain,
        noise_seed=seed,
    )
    dev = resolve_device(device)
    arcs = render_arcs(ArcParams.from_records(records, device=dev), spec, device=dev)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arcs.cpu().numpy())
    typer.echo(f"{arcs.shape[0]} arcs {tuple(arcs.shape[1:])} -> {out}")


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Output JSON parameter file (input of `render`).")],
    n: Annotated[int, typer.Option(help="Number of injections.", min=1)] = 10,
    prior: Annotated[str, typer.Option(help="Built-in prior name or a priors YAML file.")] = "default",
    theta_e: Annotated[float, typer.Option(help="Einstein radius, arcsec.")] = 1.5,
    psf_fwhm_r: Annotated[float, typer.Option(help="r-band PSF FWHM, arcsec (g x1.05, z x0.94).")] = 1.2,
    seed: Annotated[int, typer.Option(help="Run seed.")] = 0,
    cell: Annotated[
        str, typer.Option(help="Cell name (injection i of cell c in run s is reproducible).")
    ] = "",
) -> None:
    """Draw injection parameters from a prior."""
    from lenscal.injection.hosts import PSF_SCALE_FROM_R
    from lenscal.injection.priors import get_prior, sample_params

    fwhm = np.tile([psf_fwhm_r * PSF_SCALE_FROM_R[b] for b in "grz"], (n, 1))
    drawn = sample_params(get_prior(prior), np.full(n, theta_e), fwhm, seed=seed, cell=cell)
    rows = [
        {**row, **(clumps if clumps["clumps"] else {})}
        for row, clumps in zip(drawn.records(), drawn.clump_records(), strict=True)
    ]  # clumps (and the team model's mixing fraction) travel with their arc
    out.write_text(json.dumps(rows, indent=1) + "\n")
    typer.echo(f"{n} parameter sets from prior {prior!r} -> {out}")
