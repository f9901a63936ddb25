"""Comparing two grid runs: only when their geometry agrees (axes, injections per cell,
magnitude bins, thresholds, host split and hosts), else refused naming every field that
differs (D03 compared a depth 24.0-25.5 grid with a 22.5-24.5 one), unless forced. The
differences reported (B - A) per cell and per pooled marginal carry a 95% interval:

- paired, when the two runs made the same injections (same seed and host plan: every
  injection number on the same host in both, e.g. a grid with and without Poisson noise,
  or a sensitivity perturbation): each injection is a pair (detected under A, under B), and
  the interval is Newcombe's for paired proportions (method 10 with the phi correlation of
  the 2x2 table, lenscal.stats.intervals.newcombe_paired_difference), many times narrower
  than treating the runs as independent;
- otherwise Newcombe's hybrid score interval for independent proportions (method 10).

Detection under each run uses that run's own threshold values (an FPR threshold is set by
each run's scores). ``method`` in compare.json, the tables and the CLI names which ran."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lenscal.fsutil import atomic_write_text
from lenscal.selection.config import GridError
from lenscal.selection.plots import HEATMAP_THRESHOLD, RunLabel, heatmaps, run_label
from lenscal.selection.tables import pooled
from lenscal.stats.intervals import (
    PAIRED_METHOD,
    UNPAIRED_METHOD,
    newcombe_difference,
    newcombe_paired_difference,
)

CELL_KEYS = ["theta_e_bin", "psf_bin", "depth_bin", "threshold"]
MARGINALS: tuple[tuple[str, list[str]], ...] = (
    ("overall", []),
    ("theta_e", ["theta_e_bin"]),
    ("psf", ["psf_bin"]),
    ("depth", ["depth_bin"]),
)


@dataclass
class Comparison:
    a: Path
    b: Path
    geometry_differences: dict[str, tuple[Any, Any]]
    treatment_differences: dict[str, tuple[Any, Any]]
    cells: pd.DataFrame
    marginals: dict[str, pd.DataFrame]
    method: str = UNPAIRED_METHOD
    pairing: str = ""  # why the runs are (not) paired


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    fa, fb = flatten(a), flatten(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def read_run(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "meta.json"
    if not path.is_file():
        raise GridError(f"{directory}: not a grid results directory (no meta.json)")
    meta = json.loads(path.read_text())
    if meta.get("status") != "complete":
        raise GridError(f"{directory}: the grid run is not complete (status {meta.get('status')!r})")
    return dict(meta)


def compare(
    a: str | Path,
    b: str | Path,
    *,
    force: bool = False,
    out: str | Path | None = None,
    threshold: str = HEATMAP_THRESHOLD,
) -> Comparison:
    a, b = Path(a), Path(b)
    meta_a, meta_b = read_run(a), read_run(b)
    geometry = differences(meta_a["geometry"], meta_b["geometry"])
    if geometry and not force:
        listed = "; ".join(f"{k}: {va} vs {vb}" for k, (va, vb) in geometry.items())
        raise GridError(f"{a.name} and {b.name} are different grids ({listed}); --force compares them anyway")
    treatments = differences(
        {k: v for k, v in meta_a["definition"].items() if k not in meta_a["geometry"]},
        {k: v for k, v in meta_b["definition"].items() if k not in meta_b["geometry"]},
    )
    ca, cb = pd.read_csv(a / "cells.csv"), pd.read_csv(b / "cells.csv")
    pairs, pairing = (
        (None, "not paired: the geometry differs") if geometry else paired_injections(a, b, meta_a, meta_b)
    )
    if pairs is not None:
        thresholds_a, thresholds_b = _threshold_values(a), _threshold_values(b)
        labels = [t for t in thresholds_a if t in thresholds_b]
        cells = paired_counts(pairs, CELL_KEYS[:-1], thresholds_a, thresholds_b, labels, full=ca)
        marginals = {name: paired_marginal(cells, by) for name, by in MARGINALS}
        comparison = Comparison(a, b, geometry, treatments, cells, marginals, PAIRED_METHOD, pairing)
    else:
        cells = _difference(ca, cb, CELL_KEYS)
        marginals = {
            name: _difference(pooled(ca, by), pooled(cb, by), [*by, "threshold"]) for name, by in MARGINALS
        }
        comparison = Comparison(a, b, geometry, treatments, cells, marginals, UNPAIRED_METHOD, pairing)
    if out is not None:
        write(comparison, Path(out), threshold, run_label(meta_a), run_label(meta_b))
    return comparison


def paired_injections(
    a: Path, b: Path, meta_a: dict[str, Any], meta_b: dict[str, Any]
) -> tuple[pd.DataFrame | None, str]:
    """Both runs' injections joined by injection number when they are the same injections
    (same seed, same host plan, every number on the same host), else None and why not."""
    seeds = (meta_a["definition"].get("seed"), meta_b["definition"].get("seed"))
    if seeds[0] != seeds[1]:
        return None, f"not paired: seeds differ ({seeds[0]} vs {seeds[1]})"
    plans = (meta_a["definition"].get("hosts", {}), meta_b["definition"].get("hosts", {}))
    if plans[0] != plans[1]:
        return None, "not paired: the host plans differ (other hosts or binning)"
    if not ((a / "injections.parquet").is_file() and (b / "injections.parquet").is_file()):
        return None, "not paired: a run has no per-injection table (injections.parquet)"
    columns = ["number", "theta_e_bin", "psf_bin", "depth_bin", "host_row", "probability"]
    ia = pd.read_parquet(a / "injections.parquet", columns=columns)
    ib = pd.read_parquet(b / "injections.parquet", columns=["number", "host_row", "probability"])
    merged = ia.merge(ib, on="number", how="outer", suffixes=("_a", "_b"), indicator=True)
    if (merged["_merge"] != "both").any() or (merged["host_row_a"] != merged["host_row_b"]).any():
        return None, "not paired: the runs' injections do not match number for number"
    return merged.drop(columns="_merge"), f"paired: the same {len(merged):,} injections (seed {seeds[0]})"


def _threshold_values(directory: Path) -> dict[str, float]:
    return {
        k: float(v) for k, v in json.loads((directory / "metrics.json").read_text())["thresholds"].items()
    }


def paired_counts(
    pairs: pd.DataFrame,
    by: list[str],
    thresholds_a: dict[str, float],
    thresholds_b: dict[str, float],
    labels: list[str],
    *,
    full: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per group of ``by`` and threshold label: the paired 2x2 counts (both, only A, only B,
    neither), k and n of each run, B - A and Newcombe's paired 95% interval. ``full``: every
    group that exists (groups without injections get n = 0: no data)."""
    frames = []
    for label in labels:
        da = pairs["probability_a"].to_numpy() >= thresholds_a[label]
        db = pairs["probability_b"].to_numpy() >= thresholds_b[label]
        table = pairs[by].copy()
        table["both"], table["only_a"] = da & db, da & ~db
        table["only_b"], table["neither"] = ~da & db, ~da & ~db
        counts = table.groupby(by, sort=True)[["both", "only_a", "only_b", "neither"]].sum().reset_index()
        if full is not None:
            keys = full[by].drop_duplicates()
            counts = keys.merge(counts, on=by, how="left").fillna(0)
            placed = int(counts[["both", "only_a", "only_b", "neither"]].to_numpy().sum())
            if placed != len(pairs):  # a cell of the injections missing from the cell list
                raise GridError(f"{len(pairs) - placed} paired injections fall in no cell of the grid")
        counts.insert(len(by), "threshold", label)
        frames.append(counts)
    return _with_paired_interval(pd.concat(frames, ignore_index=True))


def paired_marginal(cells: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """A marginal of paired cell counts: the 2x2 counts summed (pooled), then the interval."""
    counts = ["both", "only_a", "only_b", "neither"]
    summed = cells.groupby([*by, "threshold"], sort=True)[counts].sum().reset_index()
    return _with_paired_interval(summed)


def _with_paired_interval(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for column in ("both", "only_a", "only_b", "neither"):
        out[column] = out[column].astype(int)
    out["k_a"], out["k_b"] = out["both"] + out["only_a"], out["both"] + out["only_b"]
    out["n_a"] = out["n_b"] = out["both"] + out["only_a"] + out["only_b"] + out["neither"]
    d, low, high = newcombe_paired_difference(out["both"], out["only_a"], out["only_b"], out["neither"])
    out["difference"], out["newcombe95_low"], out["newcombe95_high"] = d, low, high
    out["no_data"] = out["n_a"] == 0
    return out


def _difference(ta: pd.DataFrame, tb: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    merged = ta[[*keys, "k", "n"]].merge(tb[[*keys, "k", "n"]], on=keys, how="outer", suffixes=("_a", "_b"))
    merged = merged.fillna({"k_a": 0, "n_a": 0, "k_b": 0, "n_b": 0})
    d, low, high = newcombe_difference(merged["k_a"], merged["n_a"], merged["k_b"], merged["n_b"])
    merged["difference"], merged["newcombe95_low"], merged["newcombe95_high"] = d, low, high
    merged["no_data"] = (merged["n_a"] == 0) | (merged["n_b"] == 0)
    return merged


def write(
    comparison: Comparison,
    out: Path,
    threshold: str = HEATMAP_THRESHOLD,
    label_a: RunLabel | None = None,
    label_b: RunLabel | None = None,
) -> None:
    """The comparison's tables, compare.json and the difference heatmaps at ``threshold``."""
    out.mkdir(parents=True, exist_ok=True)
    comparison.cells.to_csv(out / "compare_cells.csv", index=False)
    for name, table in comparison.marginals.items():
        table.to_csv(out / f"compare_marginal_{name}.csv", index=False)
    overall = comparison.marginals["overall"].set_index("threshold")
    summary = {
        "a": str(comparison.a),
        "b": str(comparison.b),
        "method": comparison.method,
        "pairing": comparison.pairing,
        "geometry_differences": {k: list(v) for k, v in comparison.geometry_differences.items()},
        "treatment_differences": {k: list(v) for k, v in comparison.treatment_differences.items()},
        "overall": {
            t: {"a": [int(r.k_a), int(r.n_a)], "b": [int(r.k_b), int(r.n_b)], "difference": r.difference,
                "newcombe95": [r.newcombe95_low, r.newcombe95_high]}
            for t, r in overall.iterrows()
        },
    }  # fmt: skip
    atomic_write_text(out / "compare.json", json.dumps(summary, indent=1, default=str) + "\n")
    cells = comparison.cells.rename(columns={"difference": "difference_b_minus_a"})
    a, b = label_a or RunLabel(name=comparison.a.name), label_b or RunLabel(name=comparison.b.name)
    shared = RunLabel(
        name=a.name, preset=a.preset if a.preset == b.preset else f"{a.preset}/{b.preset}",
        mock=a.mock or b.mock, forced=sorted(set(a.forced) | set(b.forced)),
    )  # fmt: skip
    differing = "; ".join(f"{k}: {va} → {vb}" for k, (va, vb) in comparison.treatment_differences.items())
    title = (
        f"B − A completeness at {threshold} ({comparison.method})\n"
        f"A = {comparison.a.name} ({a.treatment}), B = {comparison.b.name} ({b.treatment})"
        + (f"\ndiffering: {differing}" if differing and len(differing) < 140 else "")
    )
    heatmaps(cells, out / "difference_heatmaps.png", "difference_b_minus_a", threshold, diverging=True,
             label=shared, title=title)  # fmt: skip
