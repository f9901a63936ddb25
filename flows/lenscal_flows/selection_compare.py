"""Flow ``selection-compare``: one grid run for finder A and for finder B (the same grid,
seed and hosts, so every injection is made identically for both), then the finder comparison
(lenscal.selection.finders: paired per injection, per cell and per theta_E bin, cells whose
95% interval excludes 0 marked). Each grid is the ``selection-grid`` flow, as a subflow:
resumable, fanned out, its services started for its own model when none are configured.

Results: ``<results>/selection-compare/<grid>_<preset>_<key>/{finder-a,finder-b,compare}``,
``key`` a hash of what was asked (grid, preset, models, per_cell, seed), so a rerun of the
same request reuses both grids and another request never lands in their directories."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from lenscal.selection.finders import compare_finders
from lenscal.selection.runner import CHUNK
from lenscal.workspace import canonical_sha256
from lenscal_flows.common import publish
from lenscal_flows.grid import selection_grid_flow
from lenscal_flows.settings import load_settings


@flow(name="selection-compare", log_prints=True, persist_result=True)
def selection_compare_flow(
    grid: str,
    model_a: str,
    model_b: str,
    preset: str = "full",
    per_cell: int | None = None,
    seed: int | None = None,
    hosts: str | None = None,
    out: str | None = None,
    threshold: str = "p>=0.5",
    workers: int = 2,
    chunk_size: int = CHUNK,
    force_fpr: bool = False,
) -> str:
    """Finder A and finder B (bundle directories or training run IDs) through one grid at a
    preset, then their paired comparison; returns the comparison's directory."""
    logger = get_run_logger()
    settings = load_settings()
    asked = {"grid": grid, "preset": preset, "a": model_a, "b": model_b, "per_cell": per_cell, "seed": seed}
    request = f"{Path(grid).stem}_{preset}_{canonical_sha256(asked)[:8]}"
    root = Path(out) if out else Path(settings.results) / "selection-compare" / request
    runs = {}
    for label, model in (("a", model_a), ("b", model_b)):
        logger.info("finder %s = %s: grid %s (%s)", label.upper(), model, grid, preset)
        runs[label] = selection_grid_flow(
            grid=grid, preset=preset, per_cell=per_cell, seed=seed, hosts=hosts, model=model,
            out=str(root / f"finder-{label}"), workers=workers, chunk_size=chunk_size, force_fpr=force_fpr,
        )  # fmt: skip
    result = compare_finders(runs["a"], runs["b"], out=root / "compare", threshold=threshold)
    counts = result.summary["thresholds"][threshold]
    headline = [
        f"A = {result.model_a} {counts['a'][0]}/{counts['a'][1]}, B = {result.model_b} "
        f"{counts['b'][0]}/{counts['b'][1]} at {threshold}",
        f"B − A = {counts['b_minus_a']:+.4f}, 95% [{counts['newcombe95'][0]:+.4f}, "
        f"{counts['newcombe95'][1]:+.4f}] ({result.comparison.pairing})",
        f"cells: B better in {counts['cells_b_better']}, A better in {counts['cells_a_better']} of "
        f"{counts['cells_with_data']} with data",
    ]
    figures = [result.out / "finders.png", result.out / "difference_heatmaps.png"]
    publish(result.out, f"selection-compare {grid} ({preset})", headline, figures,
            key=f"selection-compare-{Path(grid).stem}")  # fmt: skip
    logger.info("%s", "; ".join(headline))
    return str(result.out)
