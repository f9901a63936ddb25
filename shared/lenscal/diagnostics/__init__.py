"""Diagnostic batteries (D01-D05, E04, ...): named checks run in the order a definition in
configs/diagnostics lists them, each writing a results directory, recorded in the registry.

Importing the package registers the built-in checks (one module each)."""

from lenscal.diagnostics import (  # noqa: F401  (registration)
    annulus,
    beta_frac,
    beta_frac_ceiling,
    bright_arc,
    clip_sweep,
    evaluation,
    feature_sets,
    frechet,
    gain_sweep,
    grid,
    healpix_leakage,
    linear_probe,
    masked_pixels,
    sensitivity,
    split_balance,
    tier_recall,
    umap_map,
)
