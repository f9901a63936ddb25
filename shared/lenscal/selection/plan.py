"""Which host each grid injection lands on. The injection model's pool is first cut to
``host_max`` hosts when it holds more (``DataFrame.sample(n=host_max, random_state=seed)``
over the pool in manifest order, as the team's selection_function_grid.py drew them), then
each host is binned by PSF and depth (``host_binning``): ``nearest``, the team's rule, snaps
every host to its nearest bin centre with no range limit (ties to the lower bin, as
``np.argmin``); ``within_half_step`` keeps only hosts within half a step of a centre (the
rest are outside the grid). Hosts without a finite PSF size or depth are left out (the
team's argmin put them in the first bin). Injection ``i`` of cell ``c`` takes a host of
that cell's bin chosen by its own keyed generator, so any injection of a run can be
regenerated alone."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lenscal.errors import ManifestError
from lenscal.injection.hosts import host_pool
from lenscal.rng import grid_host_rng
from lenscal.selection.config import Axis, GridConfig, GridError, cell_name
from lenscal.survey import m5_from_psfdepths


@dataclass
class Injection:
    """One planned injection: its place in the grid and its host (a shard row)."""

    number: int  # cell position x per_cell + index: the same whatever cells have hosts (keys noise)
    cell: str
    theta_e: float
    psf_bin: float
    depth_bin: float
    index: int  # within its cell
    host_row: int


@dataclass
class GridPlan:
    injections: list[Injection]
    hosts_per_cell: dict[str, int]  # cell name -> hosts in its PSF x depth bin (0: no data)
    pool_size: int
    pool_sha256: str  # the host pool and its binning, by galaxy_id

    def chunks(self, size: int) -> list[list[Injection]]:
        return [self.injections[i : i + size] for i in range(0, len(self.injections), size)]


def nearest_bin(values: np.ndarray, axis: Axis, rule: str = "within_half_step") -> np.ndarray:
    """The bin centre of each value by ``rule`` (see the module docstring); NaN where the
    value is not finite or, within_half_step, more than half a step beyond the ends."""
    centres = axis.centres()
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if rule == "nearest":
        index = np.argmin(np.abs(np.where(finite, values, 0.0)[:, None] - centres[None, :]), axis=1)
        return np.where(finite, centres[index], np.nan)
    if rule != "within_half_step":
        raise GridError(f"unknown host_binning {rule!r}; known: nearest, within_half_step")
    index = np.rint((values - axis.start) / axis.step)
    inside = finite & (index >= 0) & (index < centres.size)
    picked = centres[np.clip(np.nan_to_num(index, nan=0).astype(int), 0, centres.size - 1)]
    return np.where(inside, picked, np.nan)


def capped_pool(pool: pd.DataFrame, host_max: int | None, seed: int) -> pd.DataFrame:
    """At most ``host_max`` hosts of the pool, drawn as the team's grid script drew them."""
    if host_max is None or len(pool) <= host_max:
        return pool
    return pool.sample(n=host_max, random_state=seed)


def plan_grid(manifest: pd.DataFrame, config: GridConfig) -> GridPlan:
    """The injections of a grid run over the hosts described by ``manifest`` (a shard
    directory's manifest: row i is shard row i)."""
    for column in ("psfsize_r", "psfdepth_r"):
        if column not in manifest.columns:
            raise ManifestError(f"grid hosts need manifest column {column!r} (to bin them by PSF and depth)")
    pool = host_pool(manifest.reset_index(drop=True), config.injection_model, config.split)
    pool = capped_pool(pool, config.host_max, config.seed)
    depth = m5_from_psfdepths(pool["psfdepth_r"].to_numpy(float))
    psf_bin = nearest_bin(pool["psfsize_r"].to_numpy(float), config.axes.psf_fwhm, config.host_binning)
    depth_bin = nearest_bin(depth, config.axes.depth, config.host_binning)
    rows = pool.index.to_numpy()
    digest = hashlib.sha256()
    by_bin: dict[tuple[float, float], np.ndarray] = {}
    for p, d in {
        (p, d) for p, d in zip(psf_bin, depth_bin, strict=True) if np.isfinite(p) and np.isfinite(d)
    }:
        members = np.sort(rows[(psf_bin == p) & (depth_bin == d)])
        by_bin[(float(p), float(d))] = members
    for key in sorted(by_bin):
        ids = manifest["galaxy_id"].astype(str).to_numpy()[by_bin[key]]
        digest.update(f"{key}:{','.join(ids)}\n".encode())
    injections: list[Injection] = []
    hosts_per_cell: dict[str, int] = {}
    for position, (theta_e, psf, dep) in enumerate(config.cells()):
        name = cell_name(theta_e, psf, dep)
        members = by_bin.get((float(psf), float(dep)), np.empty(0, dtype=int))
        hosts_per_cell[name] = int(members.size)
        if members.size == 0:
            continue  # no data, never 0%
        for i in range(config.per_cell):
            host = int(members[grid_host_rng(config.seed, name, i).integers(members.size)])
            number = position * config.per_cell + i
            injections.append(Injection(number, name, float(theta_e), float(psf), float(dep), i, host))
    return GridPlan(injections, hosts_per_cell, int(sum(m.size for m in by_bin.values())), digest.hexdigest())
