"""Comparing two grid runs: only when their geometry agrees (axes, injections per cell,
magnitude bins, thresholds, host split and hosts), else refused naming every field that
differs (D03 compared a depth 24.0-25.5 grid with a 22.5-24.5 one), unless forced. The
differences reported (B - A) per cell and per pooled marginal carry Newcombe's 95% interval
for a difference of two proportions (method 10, from Wilson intervals)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lenscal.fsutil import atomic_write_text
from lenscal.selection.config import GridError
from lenscal.selection.tables import pooled
from lenscal.stats.intervals import newcombe_difference

CELL_KEYS = ["theta_e_bin", "psf_bin", "depth_bin", "threshold"]
METHOD = "Newcombe (1998) method 10 hybrid score interval, 95%, from Wilson intervals"


@dataclass
class Comparison:
    a: Path
    b: Path
    geometry_differences: dict[str, tuple[Any, Any]]
    treatment_differences: dict[str, tuple[Any, Any]]
    cells: pd.DataFrame
    marginals: dict[str, pd.DataFrame]


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
    a: str | Path, b: str | Path, *, force: bool = False, out: str | Path | None = None
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
    cells = _difference(ca, cb, CELL_KEYS)
    marginals = {
        name: _difference(pooled(ca, by), pooled(cb, by), [*by, "threshold"])
        for name, by in (
            ("overall", []),
            ("theta_e", ["theta_e_bin"]),
            ("psf", ["psf_bin"]),
            ("depth", ["depth_bin"]),
        )
    }
    comparison = Comparison(a, b, geometry, treatments, cells, marginals)
    if out is not None:
        write(comparison, Path(out))
    return comparison


def _difference(ta: pd.DataFrame, tb: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    merged = ta[[*keys, "k", "n"]].merge(tb[[*keys, "k", "n"]], on=keys, how="outer", suffixes=("_a", "_b"))
    merged = merged.fillna({"k_a": 0, "n_a": 0, "k_b": 0, "n_b": 0})
    d, low, high = newcombe_difference(merged["k_a"], merged["n_a"], merged["k_b"], merged["n_b"])
    merged["difference"], merged["newcombe95_low"], merged["newcombe95_high"] = d, low, high
    merged["no_data"] = (merged["n_a"] == 0) | (merged["n_b"] == 0)
    return merged


def write(comparison: Comparison, out: Path) -> None:
    from lenscal.selection.plots import heatmaps

    out.mkdir(parents=True, exist_ok=True)
    comparison.cells.to_csv(out / "compare_cells.csv", index=False)
    for name, table in comparison.marginals.items():
        table.to_csv(out / f"compare_marginal_{name}.csv", index=False)
    overall = comparison.marginals["overall"].set_index("threshold")
    summary = {
        "a": str(comparison.a),
        "b": str(comparison.b),
        "method": METHOD,
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
    heatmaps(cells, out / "difference_heatmaps.png", "difference_b_minus_a", "p>=0.5", diverging=True)
