"""HEALPix leakage: every object's pixel recomputed from its ra/dec (never read from a
stored column alone), then any pixel holding more than one split is a leak, and any stored
``healpix_<nside>`` that disagrees with ra/dec is counted. The team's check grouped by a
fake fallback column and could not fail; this one reads real pixel indices."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lenscal.data.splits import DEFAULT_NSIDE, check_splits
from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.plotting import pyplot, save_figure


class LeakageParams(CheckParams):
    nside: int = DEFAULT_NSIDE


@register_check("healpix_leakage", LeakageParams)
def healpix_leakage(ctx: Context, params: LeakageParams, out: Path) -> Outcome:
    """HEALPix leakage: pixels shared between splits, from real pixel indices recomputed from ra/dec."""
    return leakage(ctx.hosts.manifest(), params, out)


def leakage(manifest: pd.DataFrame, params: LeakageParams, out: Path) -> Outcome:
    result = check_splits(manifest, nside=params.nside)
    leaked = pd.DataFrame(
        [{"pixel": pix, "splits": ",".join(splits)} for pix, splits in result.leaked_pixels.items()],
        columns=["pixel", "splits"],
    )
    leaked.to_csv(out / "leaked_pixels.csv", index=False)
    metrics = {
        "nside": params.nside,
        "objects": result.n_objects,
        "pixels": result.n_pixels,
        "leaked_pixels": len(result.leaked_pixels),
        "healpix_mismatches": result.healpix_mismatches,
        "ok": result.ok,
        **{f"fraction.{k}": v for k, v in result.fractions.items()},
    }
    verdict = "OK: no pixel is shared between splits" if result.ok else "FAIL"
    headline = [
        f"{verdict}: {len(result.leaked_pixels)} of {result.n_pixels} nside-{params.nside} pixels "
        f"shared between splits; {result.healpix_mismatches} stored pixel indices disagree with ra/dec"
    ]
    return Outcome(
        metrics, headline, leaked.head(20) if len(leaked) else None, [_sky(manifest, out / "sky.png")]
    )


def _sky(manifest: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for split, rows in manifest.groupby(manifest["split"].astype(str)):
        ax.scatter(rows["ra"], rows["dec"], s=2, label=f"{split} ({len(rows)})")
    ax.set_xlabel("RA (deg)")
    ax.set_ylabel("Dec (deg)")
    ax.invert_xaxis()
    ax.legend(markerscale=4)
    fig.tight_layout()
    return save_figure(fig, path)
