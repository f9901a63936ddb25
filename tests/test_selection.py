"""The selection function: pooled counts and their intervals against scipy and the team's
published numbers, guarded comparisons, FPR thresholds that say what they rest on, and a
grid end to end through real services, resumable after kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from lenscal.errors import LenscalError
from lenscal.selection.config import load_grid
from lenscal.selection.runner import _thresholds
from lenscal.selection.tables import averaged_fraction, pooled, with_intervals
from lenscal.stats.intervals import newcombe_difference

from .conftest import LENSCAL


def test_the_teams_d04_marginal_and_its_jeffreys_interval() -> None:
    """D04: 3,755 of 110,000 injections detected at p >= 0.3 over the 220 cells with hosts."""
    rng = np.random.default_rng(0)
    k = rng.multinomial(3755, np.full(220, 1 / 220))
    cells = with_intervals(pd.DataFrame({"cell": range(220), "threshold": "p>=0.3", "k": k, "n": 500}))
    overall = pooled(cells, []).iloc[0]
    assert (overall.k, overall.n) == (3755, 110_000)
    assert overall.completeness == pytest.approx(0.0341, abs=5e-5)  # 3.41%
    for level, low, high in (
        (0.68, "jeffreys68_low", "jeffreys68_high"),
        (0.95, "jeffreys95_low", "jeffreys95_high"),
    ):
        a = (1 - level) / 2
        assert overall[low] == pytest.approx(beta.ppf(a, 3755.5, 110_000 - 3755 + 0.5), rel=1e-10)
        assert overall[high] == pytest.approx(beta.ppf(1 - a, 3755.5, 110_000 - 3755 + 0.5), rel=1e-10)


def test_pooling_not_averaging() -> None:
    """The team's summary shape: a nearly empty bin with a high fraction dominated the mean
    of fractions (2.6% reported) while the counts pooled to 0.74%."""
    bins = with_intervals(
        pd.DataFrame({"mag": ["a", "b", "c"], "threshold": "p>=0.3", "k": [2, 12, 23], "n": [30, 3000, 2000]})
    )
    assert averaged_fraction(bins) == pytest.approx(0.0274, abs=5e-4)
    overall = pooled(bins, []).iloc[0]
    assert overall.completeness == pytest.approx(37 / 5030) and overall.completeness == pytest.approx(
        0.0074, abs=1e-4
    )


def test_empty_cells_are_no_data_never_zero() -> None:
    table = with_intervals(pd.DataFrame({"k": [0, 0], "n": [0, 40]}))
    assert table.no_data.tolist() == [True, False]
    assert np.isnan(table.completeness[0]) and table.completeness[1] == 0.0


def test_newcombe_difference_by_hand() -> None:
    # Newcombe (1998) table II example: 56/70 vs 48/80 -> difference 0.2, 95% CI 0.0524 to 0.3339.
    d, low, high = newcombe_difference(np.array([48]), np.array([80]), np.array([56]), np.array([70]))
    assert (
        d[0] == pytest.approx(0.2)
        and low[0] == pytest.approx(0.0524, abs=1e-4)
        and high[0] == pytest.approx(0.3339, abs=1e-4)
    )


def test_the_team_grids_and_their_sizes() -> None:
    d05, e04 = load_grid("d05"), load_grid("e04")
    assert len(d05.cells()) == 385 and d05.per_cell == 500 and d05.seed == 1337
    assert len(e04.cells()) == 308 and e04.per_cell == 200
    assert d05.geometry() != e04.geometry()


def _fake_run(directory: Path, grid: str) -> Path:
    config = load_grid(grid)
    directory.mkdir(parents=True)
    geometry = {**config.geometry(), "hosts_source": "same"}
    meta = {"status": "complete", "name": grid, "geometry": geometry, "definition": config.definition()}
    (directory / "meta.json").write_text(json.dumps(meta))
    pd.DataFrame(
        [
            {
                "theta_e_bin": 1.0,
                "psf_bin": 1.2,
                "depth_bin": 24.0,
                "threshold": "p>=0.5",
                "k": 5,
                "n": 10,
                "no_data": False,
            }
        ]
    ).to_csv(directory / "cells.csv", index=False)
    return directory


def test_comparing_the_two_team_grids_is_refused_naming_the_depth_axis(tmp_path: Path) -> None:
    from lenscal.selection.compare import compare

    d03_style, d04_style = _fake_run(tmp_path / "e04", "e04"), _fake_run(tmp_path / "d05", "d05")
    with pytest.raises(LenscalError) as err:
        compare(d03_style, d04_style)
    message = str(err.value)
    assert "axes.depth.start: 24.0 vs 22.5" in message and "axes.depth.stop: 25.5 vs 24.5" in message
    assert "per_cell: 200 vs 500" in message and "--force" in message
    run = subprocess.run(
        [*LENSCAL, "grid", "compare", str(d03_style), str(d04_style)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "axes.depth.start" in run.stderr
    forced = compare(d03_style, d04_style, force=True, out=tmp_path / "forced")
    assert (tmp_path / "forced" / "compare.json").is_file() and forced.geometry_differences


def test_fpr_thresholds_say_what_they_rest_on() -> None:
    config = load_grid("mock_demo")
    negatives = pd.DataFrame({"probability": np.linspace(0, 1, 500)})
    thresholds, info = _thresholds(config, negatives, force=False)
    assert (
        "fpr=0.001" not in thresholds
        and "rests on 500 negatives; 10000 are needed" in info["fpr=0.001"]["refused"]
    )
    forced, info = _thresholds(config, negatives, force=True)
    assert forced["fpr=0.001"] == pytest.approx(1.0, abs=0.003) and info["fpr=0.001"]["forced"]
    many = pd.DataFrame({"probability": np.random.default_rng(0).random(20_000)})
    thresholds, info = _thresholds(config, many, force=False)
    assert (
        thresholds["fpr=0.001"] == pytest.approx(0.999, abs=5e-4)
        and info["fpr=0.001"]["n_negatives"] == 20_000
    )
    assert "fpr=0.0001" not in thresholds  # 20,000 < 100,000


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .worlds import grid_world

    return grid_world(tmp_path_factory.mktemp("grid"))


def _run(world: Path, out: Path, scorer: object, injector: object, **kw: object):  # type: ignore[no-untyped-def]
    from lenscal.data.shards import ShardReader
    from lenscal.selection.runner import run_grid

    grid_keys = {k: kw.pop(k) for k in list(kw) if k in ("poisson_gain", "seed")}
    config = load_grid("mock_demo", per_cell=6, **grid_keys)
    return run_grid(config, hosts=ShardReader(world / "shards"), scorer=scorer, injector=injector, out=out,
                    chunk_size=16, progress=False, **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_grid_through_real_services_equals_the_same_grid_in_process(world: Path, tmp_path: Path) -> None:
    from lenscal.backends import open_injector, open_scorer

    from .servers import running_service

    with open_scorer(model=world / "resnet-gen9") as scorer, open_injector(device="cpu") as injector:
        local = _run(world, tmp_path / "local", scorer, injector)
        again = _run(world, tmp_path / "again", scorer, injector)
    with (
        running_service("scorer", "--model", str(world / "resnet-gen9")) as (scorer_at, _),
        running_service("injector") as (injector_at, _),
        open_scorer(endpoints=[scorer_at], wire_dtype="float32") as scorer,
        open_injector(endpoint=injector_at) as injector,
    ):
        scorer.wait_ready()
        injector.wait_ready()
        remote = _run(world, tmp_path / "remote", scorer, injector)
    a = pd.read_parquet(local.out / "injections.parquet")
    b = pd.read_parquet(remote.out / "injections.parquet")
    pd.testing.assert_frame_equal(
        a, pd.read_parquet(again.out / "injections.parquet")
    )  # same seeds, same run
    assert len(a) == 27 * 6 and a["number"].is_unique
    pd.testing.assert_frame_equal(
        a.drop(columns=["logit", "probability"]), b.drop(columns=["logit", "probability"])
    )
    np.testing.assert_allclose(a.logit, b.logit, rtol=1e-5, atol=1e-5)
    assert local.metrics["completeness"] == remote.metrics["completeness"]
    expected = {
        "cells.csv",
        "marginal_theta_e.csv",
        "completeness_heatmaps.png",
        "completeness_vs_theta_e.png",
        "completeness_vs_source_mag.png",
        "negatives.parquet",
        "meta.json",
        "metrics.json",
    }
    assert {p.name for p in local.out.iterdir()} >= expected
    meta = json.loads((local.out / "meta.json").read_text())
    assert meta["definition"]["prior"]["sha256"] and meta["checkpoint"]["bundle_sha256"]
    assert meta["definition"]["preprocess"]["clip_range"] == 3.0 and len(meta["definition_sha256"]) == 64

    # Injection i of cell c, made again alone (mid-chunk: chunks hold 16), scores as it did in the run.
    from lenscal.data.shards import ShardReader
    from lenscal.selection.replay import replay

    row = a.iloc[37]
    with open_scorer(model=world / "resnet-gen9") as scorer, open_injector(device="cpu") as injector:
        again_alone = replay(
            local.out, int(row.number), hosts=ShardReader(world / "shards"), injector=injector
        )
        logit = scorer.score(again_alone.injected[None]).logits[0]
    assert again_alone.cell == row.cell and again_alone.truth["theta_e"] == pytest.approx(row.theta_e)
    assert again_alone.truth["host_id"] == row.host_id
    assert logit == pytest.approx(row.logit, abs=1e-4)
    np.testing.assert_allclose(again_alone.injected - again_alone.host, again_alone.arc, atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_mid_grid_then_rerun_scores_every_injection_once(world: Path, tmp_path: Path) -> None:
    command = [*LENSCAL, "grid", "run", "--grid", "mock_demo", "--hosts", str(world / "shards"), "--out",
               str(tmp_path / "run"), "--model", str(world / "resnet-gen9"), "--chunk-size", "4",
               "--run-id", "E91-grid"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "run" / "parts"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("part-*.parquet"))) >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 10 <= len(list(parts.glob("part-*.parquet"))) < 81, "the kill should land mid-grid"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    table = pd.read_parquet(tmp_path / "run" / "injections.parquet")
    assert len(table) == 27 * 12 and table["number"].is_unique  # every injection once
    with pytest.raises(subprocess.CalledProcessError):  # another definition into the same directory
        subprocess.run([*command[:-2], "--per-cell", "3"], check=True, capture_output=True, timeout=300)
    replay = [
        *LENSCAL,
        "grid",
        "replay",
        str(tmp_path / "run"),
        "--number",
        "40",
        "--hosts",
        str(world / "shards"),
    ]
    shown = subprocess.run(replay, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert (tmp_path / "run" / "replay-40.png").is_file() and "probability" in shown.stdout
    from lenscal.registry.store import Registry

    record = Registry().get("E91-grid")
    assert record.status == "Complete" and {p["role"] for p in record.parents} >= {"injection_model"}
    assert record.metrics["completeness.p>=0.5.n"] == 27 * 12
    assert record.metric_sources["injections"].endswith("metrics.json")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_same_seed_grids_compare_paired_and_fpr_thresholds_recount(world: Path, tmp_path: Path) -> None:
    """A grid with and without Poisson noise makes the same injections: the comparison pairs
    them (counts reconciled by hand from both injection tables) and its interval is far
    narrower than the independent-samples one; another seed is not paired. Every FPR
    threshold re-verifies: counting p >= t over negatives.parquet as stored gives the
    achieved FPR recorded in meta.json."""
    from lenscal.backends import open_injector, open_scorer
    from lenscal.selection.compare import compare
    from lenscal.stats.intervals import PAIRED_METHOD, UNPAIRED_METHOD, newcombe_difference

    with open_scorer(model=world / "resnet-gen9") as scorer, open_injector(device="cpu") as injector:
        base = _run(world, tmp_path / "base", scorer, injector, force_fpr=True)
        noisy = _run(world, tmp_path / "noisy", scorer, injector, force_fpr=True, poisson_gain=150.0)
        other = _run(world, tmp_path / "other", scorer, injector, force_fpr=True, seed=7)
    for run in (base, noisy):
        stored = pd.read_parquet(run.out / "negatives.parquet")["probability"]
        recorded = json.loads((run.out / "meta.json").read_text())["thresholds"]
        for label, entry in recorded.items():
            count = int((stored >= entry["threshold"]).sum())
            assert count / len(stored) == entry["achieved_fpr"], label
            assert count <= entry["target_fpr"] * len(stored)
    # 110 negatives cannot back FPR 1e-3 (10,000 needed): forced, and marked so wherever shown
    metrics = json.loads((base.out / "metrics.json").read_text())
    assert metrics["completeness"]["fpr=0.001"]["forced"] and "fpr=0.001" in metrics["forced_thresholds"]
    assert not metrics["completeness"]["p>=0.5"]["forced"]
    cells = pd.read_csv(base.out / "cells.csv")
    assert (
        cells.loc[cells.threshold == "fpr=0.001", "forced"].all()
        and not cells.loc[cells.threshold == "p>=0.5", "forced"].any()
    )
    shown = subprocess.run(
        [*LENSCAL, "grid", "show", str(base.out)], capture_output=True, text=True, timeout=120
    )
    assert (
        shown.returncode == 0 and "fpr=0.001 (forced: rests on 110 negatives, 10,000 needed)" in shown.stdout
    )
    paired = compare(base.out, noisy.out)
    assert paired.method == PAIRED_METHOD and paired.pairing.startswith("paired")
    overall = paired.marginals["overall"].set_index("threshold")
    label = str((overall.k_a - overall.n_a / 2).abs().idxmin())  # the threshold splitting the injections most
    row = overall.loc[label]
    assert 0 < row.k_a < row.n_a
    t_a = json.loads((base.out / "metrics.json").read_text())["thresholds"][label]
    t_b = json.loads((noisy.out / "metrics.json").read_text())["thresholds"][label]
    a = pd.read_parquet(base.out / "injections.parquet").set_index("number")["probability"] >= t_a
    b = pd.read_parquet(noisy.out / "injections.parquet").set_index("number")["probability"] >= t_b
    assert (row.both, row.only_a, row.only_b, row.neither) == (
        int((a & b).sum()),
        int((a & ~b).sum()),
        int((~a & b).sum()),
        int((~a & ~b).sum()),
    )
    _, low, high = newcombe_difference(row.k_a, row.n_a, row.k_b, row.n_b)
    assert row.newcombe95_high - row.newcombe95_low < float(high) - float(low)
    unpaired = compare(base.out, other.out, force=True)
    assert unpaired.method == UNPAIRED_METHOD and "seeds differ" in unpaired.pairing
