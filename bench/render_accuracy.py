"""Rendering accuracy as the team measured theirs: lenscal's default render (4x4 sub-pixels,
then the pixel-sampled PSF) against a 10x10 supersampled truth (lenstronomy, source and PSF
convolution on the 10x10 sub-pixel grid, then binned), per arc the largest |difference| as
a fraction of the arc's peak pixel, and the flux difference.

    .venv/bin/python bench/render_accuracy.py [--n 40] [--fwhm 0.9]

Arcs at theta_E 1.5", PSF FWHM ``--fwhm`` in every band, no clumps (lenstronomy has no clump
model), from: today's prior (``default``: R_e 0.15-0.5", n 0.5-2); the team's D01-D05 prior
(``team_d01_d05``: R_e 0.05-0.5" along the major axis, n 0.5-4); and its cuspy corner (n 3-4,
R_e 0.05-0.15"). Each also at 8x8 and 10x10 sub-pixels, to show the difference is sampling,
not the physics. Writes bench/out/render_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lenscal.injection.priors import get_prior, sample_params
from lenscal.physics import RenderSpec, render_arcs
from tests.lenstronomy_reference import lenstronomy_arcs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="arcs per source class")
    parser.add_argument("--fwhm", type=float, default=0.9, help="PSF FWHM, arcsec")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    team = get_prior("team_d01_d05").with_overrides({"source_params": {"clumps_prob": 0.0}})
    cuspy = team.with_overrides({"source_params": {"n_range": [3.0, 4.0], "re_arcsec_range": [0.05, 0.15]}})
    spec = RenderSpec()
    out: dict[str, object] = {
        "what": "max |lenscal (4x4) - lenstronomy (10x10 supersampled)| / arc peak, per arc",
        "fwhm_arcsec": args.fwhm,
        "oversample": spec.oversample,
    }
    classes = (("default", get_prior("default")), ("team_d01_d05", team), ("cuspy_n3-4_re0.05-0.15", cuspy))
    for name, which in classes:
        params = sample_params(
            which, np.full(args.n, 1.5), np.full((args.n, 3), args.fwhm), seed=args.seed, cell=name
        )
        t0 = time.perf_counter()
        truth = lenstronomy_arcs(params, spec, supersample=10)
        seconds = time.perf_counter() - t0
        peak = truth.max(axis=(-2, -1))
        entry: dict[str, object] = {"arcs": args.n, "truth_seconds": round(seconds, 1)}
        for oversample in (spec.oversample, 8, 10):
            ours = render_arcs(params, spec.model_copy(update={"oversample": oversample})).double().numpy()
            worst = (np.abs(ours - truth).max(axis=(-2, -1)) / peak).max(axis=1)  # worst band per arc
            flux = np.abs(ours.sum(axis=(-2, -1)) / truth.sum(axis=(-2, -1)) - 1).max(axis=1)
            entry[f"oversample_{oversample}"] = {
                "max_abs_over_peak": {
                    "median": float(np.median(worst)),
                    "p90": float(np.quantile(worst, 0.9)),
                    "max": float(worst.max()),
                },
                "flux_relative": {"median": float(np.median(flux)), "max": float(flux.max())},
            }
            print(f"{name} at {oversample}x{oversample}: max|d|/peak median {np.median(worst):.4f}, 90% "
                  f"{np.quantile(worst, 0.9):.4f}, max {worst.max():.4f}; flux median {np.median(flux):.2e}, "
                  f"max {flux.max():.2e}")  # fmt: skip
        out[name] = entry
    target = Path(__file__).resolve().parent / "out" / "render_accuracy.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {target}")


if __name__ == "__main__":
    main()
