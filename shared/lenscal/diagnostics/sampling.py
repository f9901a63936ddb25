"""Choosing, scoring and injecting the cutouts a check works on, the same way in every
check: rows are drawn from the manifest by an explicit seed, scored in chunks through the
Scorer, arcs injected through the Injector with parameters and noise keyed by (seed, set
name, index) so a set made again is the same set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import Context, DiagnosticError
from lenscal.injection.api import InjectResult, RenderOptions
from lenscal.injection.hosts import host_pool, host_psf_fwhm
from lenscal.injection.priors import InjectionPrior, sample_params
from lenscal.preprocess import PreprocessOverride
from lenscal.scoring import rows as scoring
from lenscal.scoring.api import ScoreResult
from lenscal.selection.tables import with_intervals


def select_rows(
    manifest: pd.DataFrame,
    *,
    split: str | None = "val",
    label: int | None = None,
    tier: str | None = None,
    n: int | None = None,
    seed: int = 0,
    need: Sequence[str] = (),
    what: str = "cutouts",
) -> np.ndarray:
    """Shard rows (sorted) of the manifest rows matching split / label / tier with finite
    ``need`` columns; ``n`` of them drawn without replacement by ``seed`` (all when n is
    None or there are fewer)."""
    keep = np.ones(len(manifest), dtype=bool)
    for column, value in (("split", split), ("label", label), ("tier", tier)):
        if value is None:
            continue
        if column not in manifest.columns:
            raise DiagnosticError(f"{what}: the manifest has no {column!r} column")
        keep &= (manifest[column] == value).to_numpy()
    for column in need:
        if column not in manifest.columns:
            raise DiagnosticError(f"{what}: the manifest has no {column!r} column")
        keep &= np.isfinite(manifest[column].to_numpy(dtype=np.float64))
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        wanted = ", ".join(
            f"{c}={v}" for c, v in (("split", split), ("label", label), ("tier", tier)) if v is not None
        )
        raise DiagnosticError(f"{what}: no manifest rows with {wanted or 'data'}")
    if n is not None and n < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return rows


def host_rows(
    ctx: Context, *, n: int | None, seed: int, injection_model: str = "IM1", split: str = "val"
) -> np.ndarray:
    """Hosts for injections: the injection model's pool (IM1: the split's negatives), with
    PSF and depth known, ``n`` of them drawn by ``seed``."""
    manifest = ctx.hosts.manifest()
    pool = host_pool(manifest.reset_index(drop=True), injection_model, split)
    keep = np.isfinite(pool["psfsize_r"].to_numpy(dtype=np.float64))
    rows = pool.index.to_numpy()[keep]
    if rows.size == 0:
        raise DiagnosticError(f"no {injection_model} hosts with a PSF size in split {split!r}")
    if n is not None and n < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return rows


def score_rows(
    ctx: Context,
    rows: np.ndarray,
    *,
    override: PreprocessOverride | None = None,
    embeddings: bool = False,
    label: str = "score",
) -> ScoreResult:
    """Score shard rows through the context's scorer (raw cutouts: the model's own spec)."""
    return scoring.score_rows(
        ctx.scorer,
        ctx.hosts,
        rows,
        model=ctx.model,
        override=override,
        embeddings=embeddings,
        read_rows=ctx.chunk,
        label=label,
        progress=ctx.progress,
    )


def score_images(
    ctx: Context, images: np.ndarray, *, override: PreprocessOverride | None = None, embeddings: bool = False
) -> ScoreResult:
    return scoring.score_arrays(
        ctx.scorer, images, model=ctx.model, override=override, embeddings=embeddings, read_rows=ctx.chunk
    )


def inject_rows(
    ctx: Context,
    rows: np.ndarray,
    *,
    prior: InjectionPrior,
    theta_e: float,
    seed: int,
    name: str,
    poisson_gain: float | None = None,
    psf_scale: float = 1.0,
) -> InjectResult:
    """One arc per host row with parameters drawn from ``prior`` at Einstein radius
    ``theta_e`` (arcsec), keyed by (seed, name, position in ``rows``); Poisson noise (gain
    e-/nmgy, None: none) keyed by (seed, name, position). ``psf_scale`` multiplies each
    host's PSF FWHM for rendering (a sensitivity perturbation)."""
    manifest = ctx.hosts.manifest()
    results: list[InjectResult] = []
    for start in range(0, len(rows), ctx.chunk):
        block = rows[start : start + ctx.chunk]
        picked = manifest.iloc[block]
        indices = list(range(start, start + len(block)))
        params = sample_params(
            prior,
            np.full(len(block), theta_e),
            host_psf_fwhm(picked) * psf_scale,
            seed=seed,
            cell=name,
            indices=indices,
        )
        results.append(
            ctx.injector.inject(
                ctx.hosts.read(block),
                params=params,
                ids=picked["galaxy_id"].astype(str).tolist(),
                indices=indices,
                options=RenderOptions(poisson_gain=poisson_gain, noise_seed=seed, noise_cell=name),
            )
        )
    return InjectResult(
        images=np.concatenate([r.images for r in results]),
        truth=pd.concat([r.truth for r in results], ignore_index=True),
    )


def detections(probabilities: np.ndarray, thresholds: dict[str, float]) -> pd.DataFrame:
    """k of n detected (probability >= threshold) at each threshold, with the fraction in
    column ``completeness`` and its Jeffreys 68% and 95% intervals."""
    p = np.asarray(probabilities, dtype=np.float64)
    rows = [
        {"threshold": label, "k": int((p >= t).sum()), "n": int(p.size)} for label, t in thresholds.items()
    ]
    return with_intervals(pd.DataFrame(rows))


def fixed_thresholds(values: Sequence[float]) -> dict[str, float]:
    return {f"p>={v:g}": float(v) for v in values}


def labelled_rows(
    ctx: Context,
    *,
    split: str,
    n_negatives: int | None,
    seed: int,
    what: str,
    n_positives: int | None = None,
) -> np.ndarray:
    """``n_positives`` positives of ``split`` and ``n_negatives`` of its negatives (all when
    None), each drawn by ``seed``: the set the scoring-time sweeps score."""
    manifest = ctx.hosts.manifest()
    positives = select_rows(
        manifest, split=split, label=1, n=n_positives, seed=seed, what=f"{what} positives"
    )
    negatives = select_rows(
        manifest, split=split, label=0, n=n_negatives, seed=seed, what=f"{what} negatives"
    )
    return np.concatenate([positives, negatives])


def recall_and_fpr(
    probabilities: np.ndarray, labels: np.ndarray, thresholds: dict[str, float]
) -> pd.DataFrame:
    """Per threshold: recall of the positives (k/n, Jeffreys 68/95%) and false-positive
    rate of the negatives (false positives / negatives)."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels).astype(bool)
    table = detections(p[y], thresholds)
    table["false_positives"] = [int((p[~y] >= t).sum()) for t in thresholds.values()]
    table["negatives"] = int((~y).sum())
    table["fpr"] = table["false_positives"] / table["negatives"].where(table["negatives"] > 0)
    return table
