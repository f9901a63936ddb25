"""The selection function as a product (lenscal.selection.function, .export, .apply) on a
hand-built 2 x 2 x 2 grid whose every number is written here: completeness at cell centres
is the cell's k/n, interpolation and weighting are checked against hand arithmetic and
scipy's Beta quantiles, exports are read back with astropy alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from lenscal.errors import LenscalError
from lenscal.selection.apply import CatalogColumns, apply, closure
from lenscal.selection.config import GridError
from lenscal.selection.export import export
from lenscal.selection.function import SelectionFunction, Weights
from lenscal.survey import psfdepth_from_m5

THETA = (1.0, 2.0)  # arcsec, step 1.0: cells [0.5, 1.5], [1.5, 2.5]
PSF = (1.0, 1.4)  # arcsec, step 0.4: [0.8, 1.2], [1.2, 1.6]
DEPTH = (23.5, 24.0)  # AB, step 0.5: [23.25, 23.75], [23.75, 24.25]
#: k at p>=0.5 per (theta, psf, depth) cell, 10 injections each; the last cell has none.
K50 = {(0, 0, 0): 2, (0, 0, 1): 4, (0, 1, 0): 1, (0, 1, 1): 3, (1, 0, 0): 6, (1, 0, 1): 8, (1, 1, 0): 5}
K30 = {key: min(10, k + 2) for key, k in K50.items()}
EMPTY = (1, 1, 1)


def jeffreys(k: float, n: float, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    low = 0.0 if k == 0 else beta.ppf(a, k + 0.5, n - k + 0.5)
    high = 1.0 if k == n else beta.ppf(1 - a, k + 0.5, n - k + 0.5)
    return float(low), float(high)


def write_grid(directory: Path) -> Path:
    """A complete grid results directory in the runner's format, numbers chosen by hand."""
    directory.mkdir(parents=True)
    rows = []
    for label, table in (("p>=0.3", K30), ("p>=0.5", K50)):
        for i, t in enumerate(THETA):
            for j, p in enumerate(PSF):
                for m, d in enumerate(DEPTH):
                    n = 0 if (i, j, m) == EMPTY else 10
                    rows.append({"theta_e_bin": t, "psf_bin": p, "depth_bin": d, "threshold": label,
                                 "k": table.get((i, j, m), 0), "n": n})  # fmt: skip
    pd.DataFrame(rows).to_csv(directory / "cells.csv", index=False)
    definition = {
        "axes": {"theta_e": {"start": 1.0, "stop": 2.0, "step": 1.0},
                 "psf_fwhm": {"start": 1.0, "stop": 1.4, "step": 0.4},
                 "depth": {"start": 23.5, "stop": 24.0, "step": 0.5}},
        "per_cell": 10, "injection_model": "IM1", "prior": {"name": "default", "sha256": "ab" * 32},
        "seed": 7, "host_binning": "within_half_step", "source_mag_bins": [23.0, 24.0, 25.0],
        "lensed_mag_bins": [18.0, 22.0, 27.0],
        "hosts": {"shards_sha256": "cd" * 32, "pool_sha256": "ef" * 32},
    }  # fmt: skip
    meta = {
        "format": "lenscal-grid/1", "name": "hand2x2x2", "preset": "full", "status": "complete",
        "definition": definition, "definition_sha256": "12" * 32, "geometry_sha256": "34" * 32,
        "checkpoint": {"model": "finder_a", "model_id": "E99", "architecture": "resnet",
                       "bundle_sha256": "56" * 32, "weights_sha256": "78" * 32},
        "injections": 70, "mock_hosts": True, "lenscal_version": "0.1.0", "thresholds": {},
    }  # fmt: skip
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "metrics.json").write_text(json.dumps({"thresholds": {"p>=0.3": 0.3, "p>=0.5": 0.5}}))
    return directory


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    return write_grid(tmp_path / "hand")


def test_completeness_at_cell_centres_is_each_cells_k_over_n(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    t, p, d = np.meshgrid(THETA, PSF, DEPTH, indexing="ij")
    got = sf.completeness(t.ravel(), p.ravel(), d.ravel(), threshold="p>=0.5")
    for idx, (i, j, m) in enumerate(np.ndindex(2, 2, 2)):
        if (i, j, m) == EMPTY:
            assert np.isnan(got.estimate[idx]) and got.no_data[idx] and got.flag[idx] == "no data"
            continue
        k = K50[(i, j, m)]
        assert got.k[idx] == k and got.n[idx] == 10
        assert got.estimate[idx] == k / 10  # exactly
        assert (got.low68[idx], got.high68[idx]) == pytest.approx(jeffreys(k, 10, 0.68), abs=1e-12)
        assert (got.low95[idx], got.high95[idx]) == pytest.approx(jeffreys(k, 10, 0.95), abs=1e-12)
    # anywhere inside a cell is that cell (nearest), at the other threshold too
    inside = sf.completeness(1.3, 1.19, 23.3, threshold="p>=0.3")
    assert inside.estimate[0] == 0.4 and not inside.outside[0]


def test_outside_the_grid_is_nan_and_flagged_never_extrapolated(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    for method in ("nearest", "linear"):
        got = sf.completeness([2.6, 1.0, np.nan, 0.5], [1.0, 1.7, 1.0, 0.8], [23.5, 23.5, 23.5, 24.25],
                              threshold="p>=0.5", method=method)  # fmt: skip
        assert list(got.outside) == [True, True, True, False]
        assert np.isnan(got.estimate[:3]).all() and np.isnan(got.high95[:3]).all()
        assert list(got.flag[:3]) == ["outside theta_e", "outside psf_fwhm", "missing theta_e"]
        assert got.estimate[3] == pytest.approx(0.4)  # the outer edges belong to the grid


def test_linear_interpolation_between_centres_by_hand(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    got = sf.completeness([1.5, 1.25, 0.6, 1.25], [1.0, 1.0, 1.0, 1.1], [23.5, 23.625, 23.5, 23.625],
                          threshold="p>=0.5", method="linear")  # fmt: skip
    # halfway in theta between 0.2 and 0.6
    assert got.estimate[0] == pytest.approx(0.4)
    # t = 0.25 in theta and depth, on the PSF centre: 0.5625*0.2 + 0.1875*0.4 + 0.1875*0.6 + 0.0625*0.8
    assert got.estimate[1] == pytest.approx(0.35)
    # the outer half of an edge cell holds the edge centre's value
    assert got.estimate[2] == pytest.approx(0.2)
    # leaning on the empty cell (2.0, 1.4, 24.0): no data, not a number
    assert np.isnan(got.estimate[3]) and got.no_data[3] and got.flag[3] == "no data"
    # bounds are interpolated the same way
    low = 0.5 * jeffreys(2, 10, 0.95)[0] + 0.5 * jeffreys(6, 10, 0.95)[0]
    assert got.low95[0] == pytest.approx(low)


def test_equal_population_weights_reproduce_the_pooled_marginal(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    pooled = sf.marginal("theta_e", threshold="p>=0.5")
    equal = sf.marginal("theta_e", threshold="p>=0.5", weights=Weights(np.ones(sf.shape)))
    # pooled by hand: theta 1 -> 10/40, theta 2 -> 19/30 (the empty cell adds nothing)
    assert list(pooled["k"]) == [10, 19] and list(pooled["n"]) == [40, 30]
    for frame in (pooled, equal):
        assert frame["completeness"].tolist() == pytest.approx([10 / 40, 19 / 30])
        assert frame["n_effective"].tolist() == pytest.approx([40, 30])
        assert (frame.loc[1, "jeffreys95_low"], frame.loc[1, "jeffreys95_high"]) == pytest.approx(
            jeffreys(19, 30, 0.95)
        )
    # a quarter of theta 2's population weight sits on the cell without data: said, not hidden
    assert equal["weight_covered"].tolist() == pytest.approx([1.0, 0.75])
    overall = sf.marginal([], threshold="p>=0.5")
    assert overall[["threshold", "k", "n"]].to_dict("records") == [{"threshold": "p>=0.5", "k": 29, "n": 70}]
    assert overall.loc[0, "jeffreys95_low"] == pytest.approx(jeffreys(29, 70, 0.95)[0])


def test_population_weights_by_hand(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    # a survey whose PSF is 1.0" three times as often as 1.4"; one object beyond the grid
    weights = sf.weights_from({"psf_fwhm": [1.0, 1.05, 0.9, 1.3, 2.2]}, source="survey")
    assert (weights.sample_size, weights.outside) == (5, 1)
    got = sf.marginal("theta_e", threshold="p>=0.5", weights=weights).iloc[0]
    # theta 1: (3*0.2 + 3*0.4 + 1*0.1 + 1*0.3) / 8; W = 3/8, 3/8, 1/8, 1/8 of n = 10 each
    assert got["completeness"] == pytest.approx(2.2 / 8)
    n_eff = 1 / ((9 + 9 + 1 + 1) / 64 / 10)
    assert got["n_effective"] == pytest.approx(n_eff) == pytest.approx(32)
    assert (got["jeffreys95_low"], got["jeffreys95_high"]) == pytest.approx(
        (beta.ppf(0.025, 8.8 + 0.5, 32 - 8.8 + 0.5), beta.ppf(0.975, 8.8 + 0.5, 32 - 8.8 + 0.5))
    )
    with pytest.raises(GridError, match="population columns"):
        sf.weights_from({"seeing": [1.0]})


def test_unknown_threshold_axis_or_method_fail_by_name(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    with pytest.raises(GridError, match=r"p>=0\.9"):
        sf.completeness(1, 1, 24, threshold="p>=0.9")
    with pytest.raises(GridError, match="cubic"):
        sf.completeness(1, 1, 24, threshold="p>=0.5", method="cubic")
    with pytest.raises(GridError, match="redshift"):
        SelectionFunction.load(grid, magnitude="redshift")


def test_provenance_names_what_went_in(grid: Path) -> None:
    prov = SelectionFunction.load(grid).provenance
    assert prov["definition_sha256"] == "12" * 32 and prov["checkpoint"]["bundle_sha256"] == "56" * 32
    assert prov["prior"] == {"name": "default", "sha256": "ab" * 32} and prov["injection_model"] == "IM1"
    assert prov["thresholds"]["p>=0.5"] == {
        "value": 0.5,
        "rule": "fixed probability threshold",
        "forced": False,
    }


# --- export -------------------------------------------------------------------------------

#: Run in a fresh interpreter that never imports lenscal: a reader needs astropy alone.
READER = r"""
import json, sys
import numpy as np
from astropy.table import Table
path, fmt = sys.argv[1], sys.argv[2]
tables = {}
if fmt == "fits":
    from astropy.io import fits
    with fits.open(path) as hdul:
        header = dict(hdul[0].header)
        prov = json.loads(hdul[0].header["PROVJSON"])["provenance"]
        for hdu in hdul[1:]:
            tables[hdu.header["EXTNAME"]] = Table.read(path, hdu=hdu.name)
    meta = {"DEFSHA": header["DEFSHA"], "MAGSYS": header["MAGSYS"], "prov_grid": prov["grid"]}
elif fmt == "ecsv":
    t = Table.read(path, format="ascii.ecsv")
    for label in sorted(set(t["threshold"])):
        tables[label] = t[t["threshold"] == label]
    meta = {"DEFSHA": t.meta["provenance"]["definition_sha256"], "MAGSYS": t.meta["magnitude_system"],
            "prov_grid": t.meta["provenance"]["grid"]}
else:
    import h5py
    with h5py.File(path) as f:
        names = [name for name in f.keys() if not name.endswith(".__table_column_meta__")]  # astropy's
    for label in names:
        tables[label] = Table.read(path, path=label)
    first = tables[names[0]].meta
    meta = {"DEFSHA": first["provenance"]["definition_sha256"], "MAGSYS": first["magnitude_system"],
            "prov_grid": first["provenance"]["grid"]}
COLUMNS = ("theta_e_low", "theta_e_centre", "theta_e_high", "psf_fwhm_centre", "depth_centre", "k", "n",
           "completeness", "jeffreys68_low", "jeffreys95_high", "no_data")
def plain(v):
    if isinstance(v, np.bool_):
        return bool(v)
    return None if v != v else float(v)
out = {"meta": meta, "lenscal_imported": any(m.startswith("lenscal") for m in sys.modules), "tables": {}}
for label, t in tables.items():
    out["tables"][label] = {
        "units": {c: str(t[c].unit) for c in ("theta_e_low", "psf_fwhm_centre", "depth_high")},
        "columns": {c: [plain(v) for v in np.asarray(t[c])] for c in COLUMNS},
    }
print(json.dumps(out))
"""


@pytest.mark.parametrize("suffix", ["fits", "ecsv", "h5"])
def test_export_round_trips_with_astropy_alone(grid: Path, tmp_path: Path, suffix: str) -> None:
    path = export(SelectionFunction.load(grid), tmp_path / f"sf.{suffix}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", READER, str(path), {"h5": "hdf5"}.get(suffix, suffix)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    read = json.loads(done.stdout)
    assert read["lenscal_imported"] is False
    assert read["meta"] == {"DEFSHA": "12" * 32, "MAGSYS": "AB", "prov_grid": "hand2x2x2"}
    assert sorted(read["tables"]) == ["p>=0.3", "p>=0.5"]
    for label, table in (("p>=0.5", K50), ("p>=0.3", K30)):
        got = read["tables"][label]
        assert got["units"] == {"theta_e_low": "arcsec", "psf_fwhm_centre": "arcsec", "depth_high": "mag"}
        columns = got["columns"]
        assert len(columns["k"]) == 8
        for row, (i, j, m) in enumerate(np.ndindex(2, 2, 2)):
            assert columns["theta_e_centre"][row] == THETA[i]
            assert columns["theta_e_low"][row] == THETA[i] - 0.5
            assert columns["psf_fwhm_centre"][row] == pytest.approx(PSF[j])
            assert columns["depth_centre"][row] == DEPTH[m]
            n = 0 if (i, j, m) == EMPTY else 10
            assert columns["n"][row] == n and columns["no_data"][row] == (n == 0)
            if n == 0:
                assert columns["completeness"][row] is None
                continue
            k = table[(i, j, m)]
            assert columns["k"][row] == k and columns["completeness"][row] == k / 10
            assert columns["jeffreys68_low"][row] == pytest.approx(jeffreys(k, 10, 0.68)[0], abs=1e-12)
            assert columns["jeffreys95_high"][row] == pytest.approx(jeffreys(k, 10, 0.95)[1], abs=1e-12)


def test_export_refuses_an_unknown_format_and_leaves_nothing(grid: Path, tmp_path: Path) -> None:
    with pytest.raises(GridError, match=r"\.txt"):
        export(SelectionFunction.load(grid), tmp_path / "out" / "sf.txt")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- apply and the closure test -----------------------------------------------------------


def catalogue() -> pd.DataFrame:
    """Five objects, Tractor-style: psfdepth in nmgy^-2 (converted to m5 as the grid does)."""
    return pd.DataFrame(
        {
            "galaxy_id": ["a", "b", "c", "d", "e"],
            "theta_e": [1.2, 1.9, 2.0, 3.1, 1.0],
            "psfsize_r": [1.0, 1.1, 1.4, 1.0, 1.0],
            "psfdepth_r": [psfdepth_from_m5(m) for m in (23.6, 24.1, 24.0, 23.5, 23.5)],
        }
    )


def test_apply_gives_each_object_its_cell_by_hand(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    out = apply(sf, catalogue(), threshold="p>=0.5")
    # a: (1, 1.0, 23.5) 2/10; b: (2, 1.0, 24.0) 8/10; c: the empty cell; d: beyond theta 2.5; e: 2/10
    assert out["sf_depth"].tolist()[:3] == pytest.approx([23.6, 24.1, 24.0])
    assert out["p_detect"].tolist()[:2] == [0.2, 0.8] and out["p_detect"][4] == 0.2
    assert (out["p_detect_95_low"][1], out["p_detect_95_high"][1]) == pytest.approx(jeffreys(8, 10, 0.95))
    assert np.isnan(out["p_detect"][2]) and out["sf_flag"][2] == "no data" and out["sf_no_data"][2]
    assert np.isnan(out["p_detect"][3]) and out["sf_outside"][3] and out["sf_flag"][3] == "outside theta_e"
    assert out["galaxy_id"].tolist() == list("abcde")  # every row kept, in order


def test_apply_names_a_missing_column(grid: Path) -> None:
    with pytest.raises(LenscalError, match="lens_theta_e"):
        apply(SelectionFunction.load(grid), catalogue(), threshold="p>=0.5",
              columns=CatalogColumns(theta_e="lens_theta_e"))  # fmt: skip
    by_m5 = catalogue().assign(m5=[23.6, 24.1, 24.0, 23.5, 23.5])
    out = apply(SelectionFunction.load(grid), by_m5, threshold="p>=0.5", columns=CatalogColumns(depth="m5"))
    assert out["p_detect"].tolist()[:2] == [0.2, 0.8]


def test_closure_by_hand(grid: Path) -> None:
    sf = SelectionFunction.load(grid)
    applied = apply(sf, catalogue(), threshold="p>=0.5")
    scores = pd.Series([0.9, 0.2, 0.99, 0.7, 0.1], index=list("abcde"))
    table = closure(sf, applied, scores, id_column="galaxy_id", threshold="p>=0.5").set_index("theta_e_bin")
    # usable: a and e in cell (1, 1.0, 23.5) (2/10), b in (2, 1.0, 24.0) (8/10); c no data, d outside
    assert table.attrs["excluded"] == {"outside_grid": 1, "no_data": 1, "no_score": 0}
    assert table.loc["0.5-1.5", "objects"] == 2 and table.loc["0.5-1.5", "measured_k"] == 1
    assert table.loc["0.5-1.5", "predicted"] == pytest.approx(0.2)
    assert table.loc["1.5-2.5", "predicted"] == pytest.approx(0.8)
    # all: weights 2 and 1 on cells of 2/10 and 8/10 -> 0.4, n_eff = 1 / ((4/9 + 1/9) / 10) = 18
    assert table.loc["all", "predicted"] == pytest.approx(0.4)
    assert table.loc["all", "predicted_n_effective"] == pytest.approx(18)
    assert (table.loc["all", "measured_k"], table.loc["all", "objects"]) == (1, 3)
    assert table.loc["all", "measured95_high"] == pytest.approx(jeffreys(1, 3, 0.95)[1])


# --- end to end: two finders on one grid, the mock survey's lenses ------------------------

PARAMETER_COLUMNS = [
    "number",
    "cell",
    "host_row",
    "theta_e_bin",
    "psf_bin",
    "depth_bin",
    "mag_r",
    "lensed_mag_r",
]


@pytest.fixture(scope="module")
def two_finders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """mock_demo (6 per cell) on 300 mock hosts, run for finder A, finder B (another seed's
    weights) and finder A at another grid seed."""
    from lenscal.backends import open_injector, open_scorer
    from lenscal.data.shards import ShardReader
    from lenscal.preprocess import PreprocessSpec
    from lenscal.selection.config import load_grid
    from lenscal.selection.runner import run_grid

    from .worlds import grid_world, small_bundle

    root = grid_world(tmp_path_factory.mktemp("finders"))
    small_bundle(root / "finder-b", PreprocessSpec(clip_range=3.0), run_id="resnet-gen8", seed=11)
    runs = {"world": root}
    with open_injector(device="cpu") as injector:
        for name, bundle, seed in (
            ("a", "resnet-gen9", None),
            ("b", "finder-b", None),
            ("a7", "resnet-gen9", 7),
        ):
            with open_scorer(model=root / bundle) as scorer:
                config = load_grid("mock_demo", per_cell=6, seed=seed)
                hosts = ShardReader(root / "shards")
                out = root / f"grid-{name}"
                runs[name] = run_grid(config, hosts=hosts, scorer=scorer, injector=injector, out=out,
                                      chunk_size=32, force_fpr=True, progress=False).out  # fmt: skip
    return runs


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_checkpoints_on_one_grid_pair_exactly_and_use_the_paired_interval(
    two_finders: dict[str, Path], tmp_path: Path
) -> None:
    from lenscal.selection.finders import compare_finders
    from lenscal.stats.intervals import PAIRED_METHOD, newcombe_paired_difference

    from .conftest import LENSCAL

    a, b = (pd.read_parquet(two_finders[x] / "injections.parquet").sort_values("number") for x in "ab")
    assert len(a) == len(b) > 0
    # the same injections: every parameter equal, only the scores differ
    truth = [c for c in a.columns if c not in ("logit", "probability")]
    pd.testing.assert_frame_equal(a[truth].reset_index(drop=True), b[truth].reset_index(drop=True))
    assert not np.array_equal(a["probability"].to_numpy(), b["probability"].to_numpy())
    result = compare_finders(two_finders["a"], two_finders["b"], out=tmp_path / "ab", threshold="p>=0.5")
    assert result.comparison.method == PAIRED_METHOD and result.comparison.pairing.startswith("paired")
    assert (result.model_a, result.model_b) == ("resnet-gen9", "resnet-gen8")
    # the overall 2x2 table counted by hand from the two injection tables, and its interval
    da, db = a["probability"].to_numpy() >= 0.5, b["probability"].to_numpy() >= 0.5
    both, only_a, only_b, neither = (int(x.sum()) for x in (da & db, da & ~db, ~da & db, ~da & ~db))
    overall = result.comparison.marginals["overall"].set_index("threshold").loc["p>=0.5"]
    assert (overall.both, overall.only_a, overall.only_b, overall.neither) == (both, only_a, only_b, neither)
    _, low, high = newcombe_paired_difference(both, only_a, only_b, neither)
    assert (overall.newcombe95_low, overall.newcombe95_high) == pytest.approx((float(low), float(high)))
    summary = json.loads((tmp_path / "ab" / "finders.json").read_text())["thresholds"]["p>=0.5"]
    assert summary["a"] == [both + only_a, len(a)] and summary["b"] == [both + only_b, len(b)]
    sig = pd.read_csv(tmp_path / "ab" / "significant_cells.csv")
    assert ((sig.newcombe95_low > 0) | (sig.newcombe95_high < 0)).all()
    assert summary["cells_b_better"] + summary["cells_a_better"] == len(sig[sig.threshold == "p>=0.5"])
    assert (tmp_path / "ab" / "finders.png").stat().st_size > 10_000
    # another grid seed is not the same grid: refused as a finder comparison, naming the seed
    compare = [*LENSCAL, "selection", "compare", str(two_finders["a"])]
    refused = subprocess.run([*compare, str(two_finders["a7"]), "--out", str(tmp_path / "no")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "seed: 1337 vs 7" in refused.stderr and not (tmp_path / "no").exists()
    shown = subprocess.run([*compare, str(two_finders["b"]), "--out", str(tmp_path / "cli")],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "A = resnet-gen9, B = resnet-gen8; paired" in shown.stdout and "indistinguishable" in shown.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_real_grid_exports_and_applies_to_the_mock_surveys_lenses(
    two_finders: dict[str, Path], tmp_path: Path
) -> None:
    from .conftest import LENSCAL

    grid_dir, world = two_finders["a"], two_finders["world"]
    sf = SelectionFunction.load(grid_dir)
    cells = pd.read_csv(grid_dir / "cells.csv")
    cells = cells[cells.threshold == "p>=0.5"]
    got = sf.completeness(cells.theta_e_bin, cells.psf_bin, cells.depth_bin, threshold="p>=0.5")
    assert got.k.tolist() == cells.k.tolist() and got.n.tolist() == cells.n.tolist()
    # a magnitude axis from the injections: its n, summed over magnitude, counts the injections in range
    lensed = SelectionFunction.load(grid_dir, magnitude="lensed_mag")
    injections = pd.read_parquet(grid_dir / "injections.parquet")
    in_range = injections.lensed_mag_r.between(18.0, 27.0)
    assert int(lensed.n.sum()) == int(in_range.sum())
    assert int(lensed.counts("p>=0.5").sum()) == int((injections.probability[in_range] >= 0.5).sum())
    run = lambda *args: subprocess.run([*LENSCAL, *args], capture_output=True, text=True, timeout=300)  # noqa: E731
    done = run("selection", "export", str(grid_dir), "--out", str(tmp_path / "sf.fits"))
    assert done.returncode == 0, done.stderr
    from astropy.table import Table

    table = Table.read(tmp_path / "sf.fits", hdu="p>=0.5")
    assert table["k"].tolist() == cells.k.tolist() and str(table["theta_e_centre"].unit) == "arcsec"
    scores = tmp_path / "scores.parquet"
    done = run(
        "score",
        "--shards",
        str(world / "shards"),
        "--model",
        str(world / "resnet-gen9"),
        "--out",
        str(scores),
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "lenses_sf.csv"
    done = run("selection", "apply", str(grid_dir), "--catalog", str(world / "shards" / "manifest.parquet"),
               "--where", "label == 1", "--theta-e-column", "lens_theta_e", "--out", str(out),
               "--scores", str(scores))  # fmt: skip
    assert done.returncode == 0, done.stderr
    applied = pd.read_csv(out)
    manifest = pd.read_parquet(world / "shards" / "manifest.parquet")
    assert len(applied) == int(manifest.label.sum())
    inside = applied[applied.p_detect.notna()]
    assert len(inside) > 0 and (inside.sf_n == 6).all()
    assert ((inside.p_detect_95_low <= inside.p_detect) & (inside.p_detect <= inside.p_detect_95_high)).all()
    assert (applied.sf_outside | applied.sf_no_data | applied.p_detect.notna()).all()
    closure_table = pd.read_csv(tmp_path / "lenses_sf_closure.csv").set_index("theta_e_bin")
    detected = applied.merge(pd.read_parquet(scores), on="galaxy_id")
    detected = detected[detected.p_detect.notna()]
    assert closure_table.loc["all", "objects"] == len(detected)
    assert closure_table.loc["all", "measured_k"] == int((detected.probability >= 0.5).sum())
    assert closure_table.loc["all", "predicted"] == pytest.approx(detected.p_detect.mean())
    assert (tmp_path / "lenses_sf_closure.png").is_file() and "closure test" in done.stdout
    bad = run("selection", "apply", str(grid_dir), "--catalog", str(world / "shards" / "manifest.parquet"),
              "--out", str(tmp_path / "x.csv"))  # fmt: skip
    assert bad.returncode == 2 and "'theta_e'" in bad.stderr and not (tmp_path / "x.csv").exists()
