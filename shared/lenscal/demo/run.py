"""The data half of `make demo`, on embedded defaults (no external data); the flows package
then trains, serves and runs D05 on it (lenscal_flows.demo).

1. a mock DR10-like survey (lenscal.mock): FITS cutouts, manifest, gallery;
2. packed into float16 shards (`lenscal ingest`);
3. its HEALPix split checked for leaks;
4. a batch normalised with the gen5 PreprocessSpec;
5. arcs from the default injection prior injected into IM1 hosts (validation negatives)
   with each host's own PSF, and a gallery of raw, injected and normalised cutouts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.plotting import pyplot, rgb, save_figure


def prepare_demo_data(
    out: Path, *, n: int = 300, seed: int = 0, positive_fraction: float = 0.3, progress: bool | None = None
) -> dict[str, Any]:
    import torch

    from lenscal.data.ingest import ingest
    from lenscal.data.shards import ShardReader
    from lenscal.data.splits import check_splits
    from lenscal.injection import get_prior, host_pool, host_psf_fwhm, inject, sample_params
    from lenscal.mock import make_mock_survey
    from lenscal.mock.images import DEMO_LENS_PRIOR
    from lenscal.preprocess import ANNULUS_GEN5, PreprocessSpec, preprocess

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # 30% lenses with sources brighter than the default mock's (DEMO_LENS_PRIOR): the demo's
    # finder, trained for about three CPU minutes, reaches val AUC >= 0.95.
    survey = make_mock_survey(
        out / "mock", n=n, seed=seed, positive_fraction=positive_fraction, progress=progress,
        lens_prior=DEMO_LENS_PRIOR,
    )  # fmt: skip
    t_mock = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = ingest(survey.manifest, out / "shards", dtype="float16", shard_size=256, progress=progress)
    t_ingest = time.perf_counter() - t0

    reader = ShardReader(out / "shards")
    manifest = reader.manifest()
    check = check_splits(manifest)

    hosts = host_pool(manifest, "IM1").head(8)
    raw = torch.from_numpy(reader.read(hosts.index.to_numpy()))
    params = sample_params(
        get_prior("default"), np.full(len(hosts), 1.5), host_psf_fwhm(hosts), seed=seed, cell="demo"
    )
    injected = inject(raw, params)
    spec = PreprocessSpec.for_annulus(ANNULUS_GEN5)
    normed = preprocess(injected.images, spec)
    gallery = _gallery(raw.numpy(), injected.images.numpy(), normed.numpy(), out / "gallery.png")
    injected.truth.to_csv(out / "injections.csv", index=False)

    summary = {
        "cutouts": report.rows,
        "lenses": survey.positives,
        "hard_confusers": survey.confusers,
        "shards": report.shards_written + report.shards_reused,
        "storage_dtype": report.dtype,
        "cutouts_with_nan": report.rows_with_nan,
        "split_fractions": {k: round(v, 3) for k, v in check.fractions.items()},
        "split_check": "ok" if check.ok else "LEAK",
        "injections": {
            "hosts": "IM1 (validation negatives)",
            "count": len(hosts),
            "median_magnification": round(float(injected.truth.magnification.median()), 2),
            "median_arc_snr_r": round(float(injected.truth.arc_snr_r.median()), 1),
        },
        "preprocess_spec": json.loads(spec.to_json()),
        "seconds": {"mock_survey": round(t_mock, 2), "ingest": round(t_ingest, 2)},
        "survey_gallery": str(survey.gallery),
        "injection_gallery": str(gallery),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _gallery(raw: np.ndarray, injected: np.ndarray, normed: np.ndarray, path: Path) -> Path:
    plt = pyplot()

    k = min(8, raw.shape[0])
    fig, axes = plt.subplots(3, k, figsize=(1.6 * k, 5.2), squeeze=False)
    for i in range(k):
        axes[0, i].imshow(rgb(raw[i]), origin="lower")
        axes[1, i].imshow(rgb(injected[i]), origin="lower")
        axes[2, i].imshow(np.clip((normed[i][::-1].transpose(1, 2, 0) + 3) / 13, 0, 1), origin="lower")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("host")
    axes[1, 0].set_ylabel("+ arc")
    axes[2, 0].set_ylabel("preprocessed")
    fig.tight_layout()
    return save_figure(fig, path)
