"""`lenscal mock-survey`: write a DR10-like sample offline (FITS cubes or NPZ, a manifest
with the team's columns and Tractor columns, a PNG gallery). Same seed, same bytes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.data.cutouts import write_cutout_fits, write_cutout_npz
from lenscal.data.manifest import validate_manifest, write_manifest
from lenscal.data.splits import assign_splits, healpix_index
from lenscal.errors import LenscalError
from lenscal.injection.priors import InjectionPrior
from lenscal.mock.catalog import draw_catalog
from lenscal.mock.images import REAL_LENS_PRIOR, render_cutouts
from lenscal.plotting import pyplot, rgb, save_figure
from lenscal.progress import progress_bar

CHUNK = 64


@dataclass
class MockSurveyReport:
    directory: Path
    n: int
    positives: int
    confusers: int
    seconds: float
    manifest: Path
    gallery: Path


def make_mock_survey(
    out: str | Path,
    n: int = 1000,
    seed: int = 0,
    positive_fraction: float = 0.05,
    fmt: str = "fits",
    split_scheme: str = "70_30",
    progress: bool | None = None,
    lens_prior: InjectionPrior = REAL_LENS_PRIOR,
) -> MockSurveyReport:
    if n < 1:
        raise LenscalError(f"n must be >= 1, got {n}")
    if not 0 <= positive_fraction <= 1:
        raise LenscalError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if fmt not in ("fits", "npz"):
        raise LenscalError(f"format {fmt!r} must be 'fits' or 'npz'")
    directory = Path(out)
    (directory / "cutouts").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    catalog = draw_catalog(n, seed, positive_fraction)
    catalog["healpix_128"] = healpix_index(catalog["ra"].to_numpy(), catalog["dec"].to_numpy())
    catalog["split"] = assign_splits(
        catalog["ra"].to_numpy(), catalog["dec"].to_numpy(), split_scheme, seed=seed
    )
    truths, paths = [], []
    examples: dict[str, list[np.ndarray]] = {}
    with progress_bar(n, "mock survey", enabled=progress) as advance:
        for start in range(0, n, CHUNK):
            part = catalog.iloc[start : start + CHUNK].reset_index(drop=True)
            images, truth = render_cutouts(part, seed, lens_prior)
            truth.index = pd.RangeIndex(start, start + len(part))
            truths.append(truth)
            columns = {c: part[c].astype(object).tolist() for c in ("galaxy_id", "ra", "dec", "pool")}
            categories = part["confuser_category"].astype(object).tolist()
            for k, gid in enumerate(columns["galaxy_id"]):
                name = f"{gid}.{fmt}"
                path = directory / "cutouts" / name
                ra, dec = float(columns["ra"][k]), float(columns["dec"][k])
                if fmt == "fits":
                    write_cutout_fits(path, images[k], ra=ra, dec=dec)
                else:
                    write_cutout_npz(path, images[k], {"galaxy_id": str(gid), "ra": ra, "dec": dec})
                paths.append(f"cutouts/{name}")
                pool = str(columns["pool"][k])
                tier = str(truth.loc[start + k, "tier"])
                key = {"N2": f"N2 {categories[k]!s}", "pos": f"pos tier {tier}"}.get(pool, pool)
                if len(examples.setdefault(key, [])) < 6:
                    examples[key].append(images[k])
            advance(len(part))
    truth_all = pd.concat(truths)
    manifest = catalog.copy()
    manifest.insert(1, "cutout_path", paths)
    manifest["tier"] = truth_all["tier"].to_numpy()
    manifest["sample_weight"] = 1.0
    for column in ("arc_snr_r", "lens_theta_e", "lens_q_lens", "lens_r_e", "lens_mag_r"):
        if column in truth_all:
            manifest[column] = truth_all[column].to_numpy()
    validate_manifest(manifest, required=("galaxy_id", "cutout_path", "ra", "dec", "label"))
    manifest_path = write_manifest(manifest, directory / "manifest.parquet")
    gallery = _gallery(examples, directory / "gallery.png")
    seconds = time.perf_counter() - started
    summary = {
        "n": n,
        "seed": seed,
        "positives": int(manifest["label"].sum()),
        "tier_A": int((manifest["tier"] == "A").sum()),
        "pools": manifest["pool"].value_counts().to_dict(),
        "splits": manifest["split"].value_counts().to_dict(),
        "format": fmt,
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return MockSurveyReport(
        directory=directory,
        n=n,
        positives=int(manifest["label"].sum()),
        confusers=int((manifest["pool"] == "N2").sum()),
        seconds=seconds,
        manifest=manifest_path,
        gallery=gallery,
    )


def _gallery(examples: dict[str, list[np.ndarray]], path: Path) -> Path:
    plt = pyplot()

    keys = sorted(examples)
    cols = 6
    fig, axes = plt.subplots(len(keys), cols, figsize=(1.7 * cols, 1.8 * len(keys)), squeeze=False)
    for r, key in enumerate(keys):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(examples[key]):
                ax.imshow(rgb(examples[key][c]), origin="lower")
        axes[r, 0].set_ylabel(key, fontsize=8)
    fig.suptitle("lenscal mock survey (g, r, z as B, G, R; asinh)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
