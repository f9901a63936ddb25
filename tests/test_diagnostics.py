"""Diagnostics: each check on small data with a known answer, definitions validated, and D05
at the demo preset end to end through real service processes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lenscal.diagnostics.base import Context, DiagnosticError, get_check
from lenscal.diagnostics.config import load_diagnostic, resolve
from lenscal.models.architectures import MODELS, LensFinder, register_model
from lenscal.preprocess import PreprocessSpec, annulus_indices
from lenscal.stats.embeddings import frechet_distance, linear_probe

from .conftest import LENSCAL, REPO

# --- a model whose logit is linear in the light of one pixel (or a central disc) -------------


class CentralLight(nn.Module):
    """(N, 1): the mean preprocessed r-band value within ``radius_px`` of the centre pixel."""

    def __init__(self, radius_px: float) -> None:
        super().__init__()
        rows, cols = np.mgrid[0:101, 0:101]
        disc = np.hypot(rows - 50, cols - 50) <= radius_px
        self.register_buffer("disc", torch.from_numpy(disc / disc.sum()).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 1] * self.disc).sum(dim=(1, 2))[:, None]


@pytest.fixture(scope="module")
def light_probe() -> Iterator[str]:
    """Register the architecture for this module only (the model tests iterate the registry)."""

    def build(radius_px: float = 0.0, weight: float = 0.1, bias: float = -2.0) -> LensFinder:
        model = LensFinder(CentralLight(radius_px), 1)
        with torch.no_grad():
            model.head[1].weight.fill_(weight)
            model.head[1].bias.fill_(bias)
        return model

    register_model("test_light_probe", parameters=2, embedding_dim=1, description="test")(build)
    yield "test_light_probe"
    MODELS.pop("test_light_probe")


def _bundle(directory: Path, spec: PreprocessSpec, **kwargs: float) -> Path:
    from lenscal.models import create_model
    from lenscal.models.bundle import save_bundle

    return save_bundle(
        directory,
        create_model("test_light_probe", **kwargs),
        arch="test_light_probe",
        arch_kwargs=kwargs,
        spec=spec,
        run_id=directory.name,
    )


def _context(shards: Path, bundle: Path) -> Context:
    from lenscal.backends import open_injector, open_scorer
    from lenscal.data.shards import ShardReader

    scorer = open_scorer(model=bundle, engine="torch", device="cpu")
    return Context(
        hosts=ShardReader(shards), scorer=scorer, injector=open_injector(device="cpu"), progress=False
    )


# --- clip sweep ------------------------------------------------------------------------------


def test_clip_sweep_on_a_model_linear_in_one_pixel(tmp_path: Path, light_probe: str) -> None:
    """Annulus pixels are half -1, half +1 (median 0, MAD 1), so the centre pixel's
    preprocessed value is its raw value clipped to +-clip: p = sigmoid(0.1 min(v, clip) - 2)."""
    from lenscal.data.cutouts import write_cutout_npz
    from lenscal.data.ingest import ingest

    ring = annulus_indices(101, 101, 20.0, 32.0, torch.device("cpu")).numpy()
    values = [5.0, 15.0, 35.0, 80.0, 150.0, 7.0, 25.0, 60.0]
    rows = []
    for i, v in enumerate(values):
        cube = np.zeros((3, 101 * 101), np.float32)
        cube[:, ring[: ring.size // 2]] = -1.0
        cube[:, ring[ring.size // 2 :]] = 1.0
        cube = cube.reshape(3, 101, 101)
        cube[:, 50, 50] = v
        write_cutout_npz(tmp_path / f"c{i}.npz", cube, {"galaxy_id": f"g{i}"})
        rows.append(
            {
                "galaxy_id": f"g{i}",
                "cutout_path": f"c{i}.npz",
                "ra": 150.0,
                "dec": 2.0,
                "split": "val",
                "label": int(i < 5),
            }
        )
    pd.DataFrame(rows).to_parquet(tmp_path / "manifest.parquet", index=False)
    ingest(tmp_path / "manifest.parquet", tmp_path / "shards", dtype="float32", progress=False)
    bundle = _bundle(tmp_path / "probe", PreprocessSpec(clip_range=10.0), radius_px=0.0)
    ctx = _context(tmp_path / "shards", bundle)
    check = get_check("clip_sweep")
    (tmp_path / "out").mkdir()
    outcome = check.run(ctx, check.params(), tmp_path / "out")
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("galaxy_id")
    for clip in (10, 20, 50, 100):
        v = np.array([values[int(g[1:])] for g in scores.index])
        expected = 1 / (1 + np.exp(-(0.1 * np.minimum(v, clip) - 2.0)))
        np.testing.assert_allclose(scores[f"p_clip{clip}"], expected, atol=1e-6)
    # p >= 0.5 needs 0.1 min(v, clip) >= 2, i.e. v >= 20 and clip >= 20: positives 35, 80, 150.
    assert outcome.metrics["clip10.p>=0.5.k"] == 0 and outcome.metrics["clip20.p>=0.5.k"] == 3
    assert outcome.metrics["clip100.p>=0.5.fpr"] == pytest.approx(2 / 3)  # negatives 25 and 60
    assert (tmp_path / "out" / "clip_sweep.png").is_file()


# --- gain 1e12 == noiseless ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .worlds import mock_shards

    root = tmp_path_factory.mktemp("diag")
    mock_shards(root, n=400)
    return root


def test_gain_1e12_detects_exactly_what_the_noiseless_baseline_detects(
    mock_world: Path, tmp_path: Path, light_probe: str
) -> None:
    # Linear in the central light (clip wide open): detection follows the arc's brightness.
    spec = PreprocessSpec(clip_range=1e4)
    bundle = _bundle(tmp_path / "probe", spec, radius_px=8.0, weight=0.05, bias=-4.0)
    ctx = _context(mock_world / "shards", bundle)
    check = get_check("gain_sweep")
    params = check.params(n_hosts=12, mag_bins=(18, 20, 22, 24, 26), gains=(150.0, 1e12))
    outcome = check.run(ctx, params, tmp_path)
    m = outcome.metrics
    assert m["identical_at_1e12"] is True and m["max_abs_dp_at_1e12"] < 1e-5
    assert m["gain_150.max_abs_dp"] > 100 * m["max_abs_dp_at_1e12"]  # gain 150 is real noise
    detected = [m[f"noiseless.{t}.k"] for t in ("p>=0.3", "p>=0.5", "p>=0.7")]
    assert any(0 < k < 48 for k in detected), f"a threshold should split bright from faint arcs: {detected}"
    table = pd.read_csv(tmp_path / "detection.csv")
    assert set(table["variant"]) == {"noiseless", "gain_150", "gain_1e+12"}


# --- leakage, probe, Fréchet -------------------------------------------------------------------


def test_a_planted_healpix_leak_is_caught(tmp_path: Path) -> None:
    from lenscal.data.splits import assign_splits, healpix_index
    from lenscal.diagnostics.healpix_leakage import LeakageParams, leakage

    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(140, 160, 300), rng.uniform(-5, 5, 300)
    clean = pd.DataFrame(
        {
            "ra": ra,
            "dec": dec,
            "split": assign_splits(ra, dec, "70_30"),
            "healpix_128": healpix_index(ra, dec, 128),
        }
    )
    assert leakage(clean, LeakageParams(), tmp_path).metrics["ok"] is True
    leaky = clean.copy()
    neighbour = leaky.iloc[0].copy()  # a second object 1" away in the other split: same pixel
    neighbour["ra"] += 1 / 3600
    neighbour["split"] = "val" if neighbour["split"] == "train" else "train"
    leaky = pd.concat([leaky, neighbour.to_frame().T], ignore_index=True).astype({"ra": float, "dec": float})
    leaky.loc[5, "healpix_128"] += 1  # and one wrong stored pixel index
    found = leakage(leaky, LeakageParams(), tmp_path).metrics
    assert found["ok"] is False and found["leaked_pixels"] == 1 and found["healpix_mismatches"] == 1


def test_the_probe_separates_different_sets_and_not_two_draws_of_one() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (120, 16)), rng.normal(0, 1, (120, 16))
    b[:, :4] += 1.5
    assert linear_probe(a, b, permutations=30, seed=3).auc > 0.95
    same = linear_probe(rng.normal(0, 1, (120, 16)), rng.normal(0, 1, (120, 16)), permutations=30, seed=3)
    assert same.p_value > 0.05 and abs(same.auc - 0.5) < 0.15


def test_frechet_distance_against_a_scipy_reference() -> None:
    from scipy import linalg

    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, (400, 6)), rng.normal(0.3, 1.4, (300, 6)) @ rng.normal(0, 1, (6, 6))
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = mu @ mu + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, a + 2.0) == pytest.approx(6 * 4.0, rel=1e-9)  # a shift of 2 in 6 dims


# --- definitions -------------------------------------------------------------------------------


def test_every_shipped_definition_is_named_after_its_file() -> None:
    # loading each at every preset: tests/test_configs.py, over whatever configs/ holds
    for path in (REPO / "configs" / "diagnostics").glob("*.yaml"):
        assert load_diagnostic(path.stem).id == path.stem


def test_d05_is_the_ten_steps_with_the_team_seeds() -> None:
    steps = {s.name: s for s in resolve(load_diagnostic("D05"))}
    bright = steps["bright_arc"].params
    assert bright.seed == 42 and bright.n_hosts == 200 and bright.theta_e == 1.5  # type: ignore[attr-defined]
    assert [v.name for v in bright.variants] == [  # type: ignore[attr-defined]
        "baseline",
        "poisson",
        "clip20",
        "poisson_clip20",
        "unrestricted_bf",
        "gain_1e12",
    ]
    assert steps["grid_no_poisson"].params.seed == 1337  # type: ignore[attr-defined]
    assert steps["feature_sets"].params.n == 500 and steps["tier_a_recall"].params.seed == 42  # type: ignore[attr-defined]
    # the priors D05 ran with, on every injecting step and in its grids (tests/test_grid_fidelity.py)
    assert bright.prior == "team_d01_d05" and steps["feature_sets"].params.prior == "team_d01_d05"  # type: ignore[attr-defined]
    assert bright.beta_frac_range == (0.1, 0.55) and bright.comparisons == (("poisson_clip20", "clip20"),)  # type: ignore[attr-defined]
    for name in ("D01", "D02", "D03", "D04"):
        for step in resolve(load_diagnostic(name), "demo"):
            if hasattr(step.params, "prior"):
                assert step.params.prior == "team_d01_d05", (name, step.name)
            if step.check == "grid":
                assert step.params.overrides.get("prior") == "team_d01_d05", (name, step.name)  # type: ignore[attr-defined]


def test_d06_is_the_teams_corrected_prior_rerun_and_d07_the_battery() -> None:
    d05 = {s.name: s for s in resolve(load_diagnostic("D05"))}
    d06 = {s.name: s for s in resolve(load_diagnostic("D06"))}
    assert list(d06) == list(d05)  # the same steps
    assert d06["bright_arc"].params.prior == "default" and d06["bright_arc"].params.beta_frac_range == (
        0.1,
        0.4,
    )  # type: ignore[attr-defined]
    assert d06["grid_no_poisson"].params.overrides == {"prior": "default"}  # type: ignore[attr-defined]
    d07 = {s.name: s for s in resolve(load_diagnostic("D07"))}
    assert set(d07) == {"gain_sweep", "beta_frac", "sensitivity"}
    assert d07["sensitivity"].params.host_max == 10_000 and d07["sensitivity"].params.per_cell == 100  # type: ignore[attr-defined]


def test_d01_d02_e04_steps_as_the_team_ran_them() -> None:
    d01 = {s.name: s.params for s in resolve(load_diagnostic("D01"))}
    assert (d01["mismatched_annulus"].n_positives, d01["mismatched_annulus"].n_negatives) == (500, 500)  # type: ignore[attr-defined]
    assert d01["masked_pixels"].n == 1000 and d01["masked_pixels"].split is None  # type: ignore[attr-defined]
    assert d01["beta_frac_ceiling"].n_trials == 200  # type: ignore[attr-defined]
    d02 = {s.name: s for s in resolve(load_diagnostic("D02"))}
    assert d02["bright_arc_clip_sweep"].check == "bright_arc"
    assert [v.clip_range for v in d02["bright_arc_clip_sweep"].params.variants] == [None, 20, 50, 100]  # type: ignore[attr-defined]
    assert d02["clip_sweep_validation"].check == "clip_sweep"
    e04 = resolve(load_diagnostic("E04-eval"))[0].params
    assert (e04.bootstrap, e04.seed) == (10_000, 42)  # type: ignore[attr-defined]


def test_a_bad_parameter_names_the_step_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "D09.yaml"
    path.write_text(
        "id: D09\nsteps:\n  - {name: probe, check: linear_probe, params: {folds: 5, permutatons: 3}}\n"
    )
    with pytest.raises(DiagnosticError, match=r"steps\[0\] \(probe\)\.params\.permutatons"):
        load_diagnostic(path)
    path.write_text("id: D09\nsteps:\n  - {name: probe, check: linear_probes}\n")
    with pytest.raises(DiagnosticError, match="unknown check 'linear_probes'"):
        load_diagnostic(path)


# --- D05 end to end through the services ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_d05_demo_through_real_services_is_deterministic_and_recorded(
    mock_world: Path, tmp_path: Path
) -> None:
    from lenscal.registry.store import Registry

    from .servers import running_service
    from .worlds import small_bundle

    bundle = small_bundle(tmp_path / "resnet-gen9")
    with (
        running_service("scorer", "--model", str(bundle)) as (scorer_at, _),
        running_service("injector") as (injector_at, _),
    ):
        base = [
            *LENSCAL,
            "diagnose",
            "D05",
            "--preset",
            "demo",
            "--hosts",
            str(mock_world / "shards"),
            "--scorer",
            scorer_at,
            "--injector",
            injector_at,
        ]
        first = subprocess.run(
            [*base, "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=600
        )
        assert first.returncode == 0, first.stderr
        second = subprocess.run(
            [*base, "--out", str(tmp_path / "b"), "--run-id", "D55"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert second.returncode == 0, second.stderr
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a == b
    assert set(a) == {
        "bright_arc",
        "grid_no_poisson",
        "grid_poisson",
        "grid_poisson_vs_baseline",
        "feature_sets",
        "linear_probe",
        "frechet",
        "tier_a_recall",
    }
    assert a["bright_arc"]["gain_1e12.vs_baseline.p>=0.5.identical"] is True
    report = (tmp_path / "a" / "report.md").read_text()
    assert "## 10." not in report and "bright_arc/bright_arc.png" in report and "Jeffreys" in report
    demo_id = f"D05_{dt.date.today():%Y%m%d}_demo"  # a demo run is never filed under the team's D05
    record = Registry().get(demo_id)
    assert record.status == "Complete" and {p["role"] for p in record.parents} >= {"injection_model"}
    assert not Registry().exists("D05")
    assert record.metrics["grid_no_poisson.completeness.p>=0.5.n"] == 27 * 4
    assert {Path(s) for s in record.metric_sources.values()} == {(tmp_path / "a" / "metrics.json").resolve()}
    verify = subprocess.run([*LENSCAL, "registry", "verify"], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_never_lands_on_the_teams_record(mock_world: Path, tmp_path: Path) -> None:
    """In a registry imported from the team's file, a demo D05 on mock data with another model
    is filed as D05_<date>_demo; D05 keeps gen4 and its note; --run-id D05 and record-results
    into D05 are refused naming what differs; the report's summary puts the team's numbers
    (read from the registry) beside this run's; registry verify passes."""
    from lenscal.registry.store import Registry

    from .conftest import TEAM_KIT
    from .worlds import small_bundle

    imported = subprocess.run(
        [*LENSCAL, "registry", "import", str(TEAM_KIT / "seed" / "EXPERIMENT_REGISTRY.md")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    team_before = Registry().get("D05")
    bundle = small_bundle(tmp_path / "resnet-gen9")
    Registry().add("training", "resnet-gen9", status="Trained")
    base = [*LENSCAL, "diagnose", "D05", "--preset", "demo", "--hosts", str(mock_world / "shards"),
            "--model", str(bundle), "--device", "cpu", "--only", "tier_a_recall"]  # fmt: skip
    run = subprocess.run(
        [*base, "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    demo = Registry().get(f"D05_{dt.date.today():%Y%m%d}_demo")
    assert [(p["id"], p["role"]) for p in demo.parents if p["role"] == "checkpoint"] == [
        ("resnet-gen9", "checkpoint")
    ]
    team = Registry().get("D05")
    assert team.parents == team_before.parents and team.notes == team_before.notes
    assert team.results_path == team_before.results_path and not team.artifacts
    report = (tmp_path / "demo" / "report.md").read_text()
    assert (
        "## Summary: this run beside the team's" in report and "read from the registry's record D05" in report
    )
    assert "| Tier-A recall | Tier-A recall 89.3% |" in report and "not run" in report  # other steps: --only
    assert "fpr=0.001 (set on the validation negatives) **(forced: too few negatives)**" in report
    # the team's ID is refused for this run, naming what differs
    forced = subprocess.run(
        [*base, "--out", str(tmp_path / "forced"), "--run-id", "D05"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert forced.returncode == 2 and "Traceback" not in forced.stderr
    assert "checkpoint gen4 vs resnet-gen9" in forced.stderr and "preset full" in forced.stderr
    assert "host set not recorded on D05" in forced.stderr
    filed = subprocess.run(
        [*LENSCAL, "registry", "record-results", "D05", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
    )
    assert filed.returncode == 2 and "checkpoint gen4 vs resnet-gen9" in filed.stderr
    assert Registry().get("D05").parents == team_before.parents and not Registry().get("D05").metrics
    # the same run again under its own ID is fine, and its lineage comes from the run
    again = subprocess.run(
        [*base, "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    verify = subprocess.run([*LENSCAL, "registry", "verify"], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- the other checks on known answers -------------------------------------------------------


def test_masked_pixel_audit_counts_planted_nans() -> None:
    from lenscal.diagnostics.masked_pixels import pixel_audit

    images = np.ones((4, 3, 101, 101), np.float32)
    images[1, 0, 0, 0] = np.nan  # a corner: masked, not central
    images[2, 2, 50, 55] = np.nan  # 5 px from the centre: central at radius 10
    images[3, :, :10, :] = np.nan  # ten rows of every band
    images[0, 1, 70, 70] = 0.0
    audit = pixel_audit(images, central_radius_px=10.0)
    assert audit["any_nan"].tolist() == [False, True, True, True]
    assert audit["central_nan"].tolist() == [False, False, True, False]
    assert audit["any_zero"].tolist() == [True, False, False, False]
    assert audit["nan_fraction"][3] == pytest.approx(10 / 101)
    assert audit["nan_fraction"][1] == pytest.approx(1 / (3 * 101 * 101))


def test_annulus_median_and_mad_by_hand() -> None:
    from lenscal.diagnostics.annulus import ring_median_mad

    rng = np.random.default_rng(4)
    band = rng.normal(0.0, 1.0, (3, 101, 101))
    band[1, 40:60, 40:60] = np.nan  # inside r < 20: no effect on either ring
    band[2, 0:5, :] = np.nan  # some ring pixels masked: they are left out
    rows, cols = np.mgrid[0:101, 0:101]
    r = np.hypot(rows - 50, cols - 50)
    median, mad = ring_median_mad(band, 32.5, 45.0)
    for i in range(3):
        values = band[i][(r >= 32.5) & (r < 45.0)]
        values = values[np.isfinite(values)]
        assert median[i] == pytest.approx(np.median(values))
        assert mad[i] == pytest.approx(np.median(np.abs(values - np.median(values))))


def test_split_balance_sees_a_shifted_observing_condition(tmp_path: Path) -> None:
    from lenscal.diagnostics.split_balance import SplitBalanceParams, balance

    rng = np.random.default_rng(5)
    n = 400
    frame = pd.DataFrame(
        {"split": np.where(np.arange(n) < 250, "train", "val"), "label": rng.integers(0, 2, n)}
    )
    frame["psfsize_r"] = np.where(frame["split"] == "train", rng.normal(1.2, 0.1, n), rng.normal(1.5, 0.1, n))
    frame["psfdepth_r"] = rng.normal(300, 20, n)  # the same in both
    outcome = balance(frame, SplitBalanceParams(columns=("psfsize_r", "psfdepth_r")), tmp_path)
    tests = pd.read_csv(tmp_path / "ks_tests.csv")
    shifted = tests[tests["column"] == "psfsize_r"]
    same = tests[tests["column"] == "psfdepth_r"]
    assert (shifted["ks_statistic"] > 0.8).all() and (shifted["p_value"] < 1e-10).all()
    assert (same["p_value"] > 1e-3).all()
    assert outcome.metrics["ks_max_column"].startswith("psfsize_r")
    assert outcome.metrics["train.n"] == 250 and outcome.metrics["val.n"] == 150


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_d01_and_d07_demo_in_process(mock_world: Path, tmp_path: Path) -> None:
    """The checks D05 does not use (masks, annulus, beta_frac, UMAP, gain sweep, sensitivity)
    on the mock survey, recorded and resumable."""
    from .worlds import small_bundle

    bundle = small_bundle(tmp_path / "resnet-gen9")
    for name in ("D01", "D07"):
        command = [
            *LENSCAL,
            "diagnose",
            name,
            "--preset",
            "demo",
            "--hosts",
            str(mock_world / "shards"),
            "--model",
            str(bundle),
            "--out",
            str(tmp_path / name),
            "--device",
            "cpu",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        again = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and "reused" in again.stdout  # every step reused, nothing rerun
    d01 = json.loads((tmp_path / "D01" / "metrics.json").read_text())
    val = int((pd.read_parquet(mock_world / "shards" / "manifest.parquet")["split"] == "val").sum())
    assert d01["split_balance"]["val.n"] == val
    assert d01["annulus_statistics"]["paired"] == min(val, 200)  # demo preset: n = 200
    assert "lenses.neighbours.negatives" in d01["umap_map"]
    assert (tmp_path / "D01" / "umap_map" / "umap.png").is_file()
    ceiling = d01["beta_frac_ceiling"]
    assert ceiling["p_beta_frac_below_0.55"] == pytest.approx((0.55**2 - 0.1**2) / (1 - 0.1**2))  # 29.5%
    assert ceiling["detection"]["1"]["n"] == 40  # demo preset: 40 trials per upper limit
    assert d01["mismatched_annulus"]["own_annulus"]  # 20 lenses + 60 negatives in the demo
    report = (tmp_path / "D01" / "report.md").read_text()
    assert "Ran: 40 arcs per beta_frac upper limit" in report  # captions say what ran
    d07 = json.loads((tmp_path / "D07" / "metrics.json").read_text())
    assert d07["gain_sweep"]["identical_at_1e12"] is True
    assert set(d07["sensitivity"]) >= {"psf_plus10pct", "q_lens_narrower"}
    assert (tmp_path / "D07" / "sensitivity" / "sensitivity.png").is_file()
