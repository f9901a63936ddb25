"""Selection-function grids inside a diagnostic (D05 steps 7 and 8, D04, E04-IM1/IM2): a
grid run (lenscal.selection, resumable in the step's directory) and the guarded comparison
of two grid runs (refused when their geometry differs, unless forced)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from lenscal.diagnostics.base import CheckParams, Context, DiagnosticError, Outcome, register_check
from lenscal.selection.compare import compare
from lenscal.selection.config import load_grid
from lenscal.selection.runner import run_grid
from lenscal.selection.tables import forced_note
from lenscal.stats.intervals import PAIRED_METHOD


class GridParams(CheckParams):
    grid: str  # a grid name (configs/grids) or YAML file
    per_cell: int | None = None
    seed: int | None = None
    #: Any other grid keys, e.g. poisson_gain or preprocess_override.
    overrides: dict[str, Any] = Field(default_factory=dict)
    force_fpr: bool = False
    chunk_size: int = 256


@register_check("grid", GridParams)
def grid(ctx: Context, params: GridParams, out: Path) -> Outcome:
    """Selection-function grid: completeness per cell and pooled marginals with Jeffreys intervals."""
    config = load_grid(params.grid, per_cell=params.per_cell, seed=params.seed, **params.overrides)
    config = config.model_copy(update={"preset": ctx.preset})  # a label: not in the definition
    result = run_grid(
        config,
        hosts=ctx.hosts,
        scorer=ctx.scorer,
        injector=ctx.injector,
        out=out,
        model=ctx.model,
        chunk_size=params.chunk_size,
        force_fpr=params.force_fpr,
        progress=ctx.progress,
    )
    m = result.metrics
    headline = [
        f"grid {config.name}: {m['injections']} injections in {m['cells_with_data']} of {m['cells']} cells "
        f"(the rest: no hosts, no data)"
    ]
    for label, entry in m["completeness"].items():
        if entry["value"] is None:
            headline.append(f"{label}: no data")
            continue
        low, high = entry["jeffreys68"]
        headline.append(
            f"{label}{forced_note(label, m['fpr_thresholds'])}: pooled completeness "
            f"{entry['k']}/{entry['n']} = {entry['value']:.2%} (Jeffreys 68% [{low:.2%}, {high:.2%}])"
        )
    figures = [
        out / "completeness_heatmaps.png",
        out / "completeness_vs_theta_e.png",
        out / "completeness_vs_source_mag.png",
    ]
    pool = f"{config.host_max:,} hosts drawn" if config.host_max else "all hosts"
    poisson = f"gain {config.poisson_gain:g} e-/nmgy" if config.poisson_gain else "off"
    override = (
        config.preprocess_override.model_dump(exclude_none=True) if config.preprocess_override else None
    )
    caption = (
        f"grid {config.name}: {m['injections']:,} injections ({config.per_cell} per cell) in "
        f"{m['cells_with_data']} of {m['cells']} cells, prior {config.prior}, {config.injection_model} hosts "
        f"({pool}, {config.host_binning} binning), Poisson {poisson}"
        + (f", preprocessing override {override}" if override else "")
        + f", seed {config.seed}"
    )
    return Outcome(m, headline, None, figures, caption=caption)


class GridCompareParams(CheckParams):
    a: str  # an earlier step of this run, or a grid results directory (relative: to the results root)
    b: str
    force: bool = False


@register_check("grid_compare", GridCompareParams)
def grid_compare(ctx: Context, params: GridCompareParams, out: Path) -> Outcome:
    """Grid comparison: B - A per cell and pooled, Newcombe 95%; refused when the grids differ in geometry."""
    a, b = _results(ctx, params.a), _results(ctx, params.b)
    comparison = compare(a, b, force=params.force, out=out)
    overall = comparison.marginals["overall"]
    metrics: dict[str, Any] = {
        "a": params.a,  # as named (a step, or a path from the results root): no machine paths
        "b": params.b,
        "method": comparison.method,
        "pairing": comparison.pairing,
        "geometry_differences": sorted(comparison.geometry_differences),
        "treatment_differences": sorted(comparison.treatment_differences),
    }
    kind = "paired" if comparison.method == PAIRED_METHOD else "unpaired"
    headline = [f"{comparison.pairing}; intervals: {comparison.method}"]
    if comparison.treatment_differences:
        changed = "; ".join(f"{k}: {va} -> {vb}" for k, (va, vb) in comparison.treatment_differences.items())
        headline.append(f"compared: {changed}")
    for _, r in overall.iterrows():
        metrics[f"overall.{r.threshold}"] = {
            "a": [int(r.k_a), int(r.n_a)],
            "b": [int(r.k_b), int(r.n_b)],
            "difference": float(r.difference),
            "newcombe95": [float(r.newcombe95_low), float(r.newcombe95_high)],
        }
        headline.append(
            f"{r.threshold}: {int(r.k_a)}/{int(r.n_a)} -> {int(r.k_b)}/{int(r.n_b)}, "
            f"B - A {r.difference:+.4f} ({kind} Newcombe 95% [{r.newcombe95_low:+.4f}, "
            f"{r.newcombe95_high:+.4f}])"
        )
    caption = f"{params.b} against {params.a}, per cell and pooled; {comparison.pairing}"
    return Outcome(metrics, headline, overall, [out / "difference_heatmaps.png"], caption=caption)


def _results(ctx: Context, name: str) -> Path:
    if name in ctx.steps:
        return ctx.steps[name]
    path = Path(name)
    if not path.is_absolute() and ctx.root is not None:
        path = ctx.root.parent / path
    if not (path / "meta.json").is_file():
        known = ", ".join(ctx.steps) or "none"
        raise DiagnosticError(
            f"grid_compare: {name!r} is neither a finished step of this run ({known}) nor a grid results "
            f"directory ({path})"
        )
    return path
