"""Embedding sets for the feature-space checks (D05 step 9, the team's feature-space
analysis): penultimate-layer embeddings of (a) Tier-A validation lenses, (b) bright
injections at low beta_frac (dramatic arcs), (c) bright injections at high beta_frac
(barely distorted), (d) validation negatives. Written to ``embeddings.npz`` for
``linear_probe``, ``frechet`` and ``umap_map``, which name this step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lenscal.diagnostics.base import CheckParams, Context, DiagnosticError, Outcome, register_check
from lenscal.diagnostics.sampling import host_rows, inject_rows, score_images, score_rows, select_rows
from lenscal.fsutil import atomic_path
from lenscal.injection.priors import get_prior

EMBEDDINGS = "embeddings.npz"


class FeatureSetParams(CheckParams):
    n: int = 500  # per set (real lenses: all Tier-A lenses when fewer)
    lens_tier: str | None = "A"  # None: every lens of the split
    split: str = "val"
    theta_e: float = 1.5  # arcsec
    source_mag: tuple[float, float] = (19.0, 19.0)  # unlensed r AB range (the team: exactly 19)
    low_beta_frac: tuple[float, float] = (0.1, 0.3)
    high_beta_frac: tuple[float, float] = (0.7, 1.0)
    poisson_gain: float | None = None
    prior: str = "default"
    seed: int = 42


@register_check("feature_sets", FeatureSetParams)
def feature_sets(ctx: Context, params: FeatureSetParams, out: Path) -> Outcome:
    """Feature sets: penultimate embeddings of Tier-A lenses, low/high beta_frac injections, negatives."""
    manifest = ctx.hosts.manifest()
    lenses = select_rows(
        manifest,
        split=params.split,
        label=1,
        tier=params.lens_tier,
        n=params.n,
        seed=params.seed,
        what=f"tier {params.lens_tier} lenses" if params.lens_tier else "lenses",
    )
    negatives = select_rows(
        manifest, split=params.split, label=0, n=params.n, seed=params.seed, what="negatives"
    )
    hosts = host_rows(ctx, n=params.n, seed=params.seed + 1, split=params.split)
    hosts = np.resize(hosts, params.n)  # reuse hosts when the pool is smaller than n
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, rows in (("tier_a" if params.lens_tier == "A" else "lenses", lenses), ("negatives", negatives)):
        scored = score_rows(ctx, rows, embeddings=True, label=name)
        sets[name] = (_embeddings(scored.embeddings, name), scored.probabilities)
    base = get_prior(params.prior)
    for name, beta in (("inj_low_bf", params.low_beta_frac), ("inj_high_bf", params.high_beta_frac)):
        prior = base.with_overrides(
            {"source_params": {"r_mag_range": list(params.source_mag), "beta_frac_range": list(beta)}},
            source=f"feature_sets {name}",
        )
        injected = inject_rows(
            ctx,
            hosts,
            prior=prior,
            theta_e=params.theta_e,
            seed=params.seed,
            name=f"feature_sets_{name}",
            poisson_gain=params.poisson_gain,
        )
        scored = score_images(ctx, injected.images, embeddings=True)
        sets[name] = (_embeddings(scored.embeddings, name), scored.probabilities)
    with atomic_path(out / EMBEDDINGS) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            set=np.concatenate([np.full(len(e), name) for name, (e, _) in sets.items()]),
            embedding=np.concatenate([e for e, _ in sets.values()]),
            probability=np.concatenate([p for _, p in sets.values()]),
        )
    metrics: dict[str, Any] = {"embedding_dim": int(next(iter(sets.values()))[0].shape[1])}
    for name, (e, p) in sets.items():
        metrics[f"{name}.n"] = len(e)
        metrics[f"{name}.median_probability"] = float(np.median(p))
    headline = [
        ", ".join(f"{name}: {len(e)} (median p {np.median(p):.3f})" for name, (e, p) in sets.items())
        + f"; {metrics['embedding_dim']}-dim embeddings"
    ]
    caption = (
        "embeddings of "
        + ", ".join(f"{len(e)} {name}" for name, (e, _) in sets.items())
        + f'; injections at theta_E {params.theta_e:g}", r {params.source_mag[0]:g}-'
        f"{params.source_mag[1]:g}, prior {params.prior}, seed {params.seed}"
    )
    return Outcome(metrics, headline, caption=caption)


def _embeddings(values: np.ndarray | None, name: str) -> np.ndarray:
    if values is None:
        raise DiagnosticError(f"feature_sets: the scorer returned no embeddings for {name}")
    return np.asarray(values, dtype=np.float32)


def load_sets(directory: Path) -> dict[str, np.ndarray]:
    """The embedding sets a feature_sets step wrote, by set name."""
    path = directory / EMBEDDINGS
    if not path.is_file():
        raise DiagnosticError(f"{path}: missing (run the feature_sets step first)")
    with np.load(path) as data:
        names, embedding = data["set"], data["embedding"]
    return {str(n): embedding[names == n] for n in dict.fromkeys(names.tolist())}


def needed(sets: dict[str, np.ndarray], name: str, check: str) -> np.ndarray:
    if name not in sets:
        raise DiagnosticError(
            f"{check}: no embedding set {name!r}; the feature_sets step holds {sorted(sets)}"
        )
    return sets[name]
