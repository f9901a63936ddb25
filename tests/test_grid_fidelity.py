"""The team's grid as their selection_function_grid.py built it: the host pool capped at
``host_max`` by ``DataFrame.sample(random_state=seed)``, every host snapped to its nearest PSF
and depth bin with no range limit, the lensed-magnitude bins 18-20-22-24-27."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lenscal.selection.config import load_grid
from lenscal.selection.plan import capped_pool, nearest_bin, plan_grid
from lenscal.survey import NANOMAGGY_ZEROPOINT_AB


def psfdepth_for(m5: float) -> float:
    """psfdepth (nmgy^-2) whose 5-sigma depth is m5: m5 = 22.5 - 2.5 log10(5 / sqrt(psfdepth))."""
    return float((5.0 / 10 ** ((NANOMAGGY_ZEROPOINT_AB - m5) / 2.5)) ** 2)


def test_nearest_snapping_has_no_range_limit_and_ties_go_low() -> None:
    d05 = load_grid("d05")
    axis = d05.axes.psf_fwhm  # centres 0.9, 1.05, ..., 1.8
    values = np.array([0.40, 0.90, 0.975, 1.20, 1.80, 2.60, np.nan])
    # by hand: 0.40 -> 0.9 (below the range), 0.975 halfway 0.9 / 1.05 -> the lower (argmin),
    # 2.60 -> 1.8 (above the range), NaN -> left out
    np.testing.assert_array_equal(
        nearest_bin(values, axis, "nearest"), [0.90, 0.90, 0.90, 1.20, 1.80, 1.80, np.nan]
    )
    within = nearest_bin(values, axis, "within_half_step")
    np.testing.assert_array_equal(np.isnan(within), [True, False, False, False, False, True, True])
    assert d05.host_binning == "nearest" and d05.host_max == 20000 and d05.fpr_negatives_max == 50000
    assert d05.lensed_mag_bins == (18.0, 20.0, 22.0, 24.0, 27.0)
    assert d05.prior == "team_d01_d05"


def test_host_cap_draws_like_the_teams_script() -> None:
    pool = pd.DataFrame({"galaxy_id": [f"g{i}" for i in range(10)], "v": range(10)}, index=range(5, 15))
    picked = capped_pool(pool, 4, 1337)
    # the team: hosts.sample(n=host_max, random_state=seed); pandas draws positions with
    # RandomState(seed).choice(len, n, replace=False)
    positions = np.random.RandomState(1337).choice(10, 4, replace=False)
    assert picked["galaxy_id"].tolist() == [f"g{i}" for i in positions]
    assert capped_pool(pool, 10, 1337) is pool and capped_pool(pool, None, 1337) is pool


def coverage_manifest() -> pd.DataFrame:
    """Validation negatives at known (PSF, depth): four bins inside the d05 range, two hosts far
    outside it (PSF 2.6", depth 25.4: snapped to the edge bins 1.8" / 24.5), one without a
    depth, plus positives and training rows that are never hosts."""
    hosts = [
        (0.92, 22.55), (1.19, 22.6), (1.21, 23.45), (1.49, 24.0), (1.52, 24.02),
        (2.60, 25.4), (2.50, 25.3), (1.0, np.nan),
    ]  # fmt: skip
    rows = []
    for i, (psf, m5) in enumerate(hosts):
        rows.append({"galaxy_id": f"h{i}", "split": "val", "label": 0, "psfsize_r": psf,
                     "psfdepth_r": psfdepth_for(m5) if np.isfinite(m5) else np.nan})  # fmt: skip
    for i in range(3):
        rows.append(
            {
                "galaxy_id": f"p{i}",
                "split": "val",
                "label": 1,
                "psfsize_r": 1.35,
                "psfdepth_r": psfdepth_for(23.0),
            }
        )
        rows.append(
            {
                "galaxy_id": f"t{i}",
                "split": "train",
                "label": 0,
                "psfsize_r": 1.65,
                "psfdepth_r": psfdepth_for(23.0),
            }
        )
    return pd.DataFrame(rows)


def test_d05_non_empty_cells_on_known_coverage() -> None:
    manifest = coverage_manifest()
    plan = plan_grid(manifest, load_grid("d05", per_cell=2))
    # (PSF bin, depth bin) with hosts: (0.9, 22.5), (1.2, 22.5), (1.2, 23.5), (1.5, 24.0),
    # (1.8, 24.5) from the two far-out hosts: 5 bins x 11 Einstein radii = 55 of 385 cells
    non_empty = [name for name, hosts in plan.hosts_per_cell.items() if hosts]
    assert len(plan.hosts_per_cell) == 385 and len(non_empty) == 55
    assert plan.pool_size == 7  # the host without a depth is left out
    assert len(plan.injections) == 55 * 2
    edge = [n for n in non_empty if n.endswith("_psf1.800_m524.500")]
    assert len(edge) == 11 and all(plan.hosts_per_cell[n] == 2 for n in edge)
    # lenscal's stricter rule drops the two far-out hosts: 4 bins, 44 cells
    strict = plan_grid(manifest, load_grid("d05", per_cell=2, host_binning="within_half_step"))
    assert sum(1 for v in strict.hosts_per_cell.values() if v) == 44
    # a cap of 3 hosts keeps exactly the team's draw of 3 from the 8 validation negatives
    capped = plan_grid(manifest, load_grid("d05", per_cell=2, host_max=3))
    drawn = manifest[(manifest.split == "val") & (manifest.label == 0)].sample(n=3, random_state=1337)
    used = {inj.host_row for inj in capped.injections}
    assert used <= set(drawn.index) and capped.pool_size == int(np.isfinite(drawn.psfdepth_r).sum())


@pytest.mark.parametrize("grid", ["d05", "d05_poisson", "e04", "e04_im2"])
def test_team_grids_use_the_team_prior_and_pool(grid: str) -> None:
    config = load_grid(grid)
    assert (config.prior, config.host_max, config.host_binning) == ("team_d01_d05", 20000, "nearest")
