"""Survey-scale scoring into a catalogue (lenscal.scoring.survey, `lenscal score-survey`):
schema and top-k against plain in-process scoring, resume after kill -9 with exactly one row
per cutout, flat memory as the survey grows, the meta-learner on synthetic scores with a
known answer and on the mock survey, and the capacity planner against hand-computed times."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.evaluation.meta import compare, fit_meta
from lenscal.preprocess import PreprocessSpec
from lenscal.scoring.api import ModelInfo
from lenscal.scoring.local import LocalScorer
from lenscal.scoring.meta import load_meta
from lenscal.scoring.plan import plan, read_rates
from lenscal.scoring.survey import score_survey

from .conftest import LENSCAL, make_toy_cutouts
from .worlds import small_bundle


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Mock survey shards with train/val/test splits, and two small finders that differ."""
    from lenscal.data.ingest import ingest
    from lenscal.mock import make_mock_survey

    root = tmp_path_factory.mktemp("survey")
    survey = make_mock_survey(
        root / "mock", n=360, seed=8, positive_fraction=0.3, split_scheme="70_15_15", progress=False
    )
    ingest(survey.manifest, root / "shards", dtype="float16", progress=False)
    a = small_bundle(root / "a", run_id="resnet-gen8")
    b = small_bundle(root / "b", spec=PreprocessSpec(clip_range=4.0), run_id="resnet-gen9")
    return {"shards": root / "shards", "a": a, "b": b, "root": root}


def test_catalogue_schema_and_top_k_equal_in_process_scoring(world: dict[str, Path], tmp_path: Path) -> None:
    reader = ShardReader(world["shards"])
    manifest = reader.manifest()
    with LocalScorer([world["a"], world["b"]], device="cpu") as scorer:
        summary = score_survey(scorer, reader, tmp_path / "cat", part_rows=64, read_rows=50, top_k=10)
        everything = reader.read(np.arange(len(reader)), dtype=None)
        direct = {m: scorer.score(everything, model=m).probabilities for m in ("resnet-gen8", "resnet-gen9")}
    table = pd.read_parquet(tmp_path / "cat" / "parts").sort_values("row").reset_index(drop=True)
    assert list(table.columns) == [
        "galaxy_id", "ra", "dec", "row",
        "logit_resnet-gen8", "p_resnet-gen8", "logit_resnet-gen9", "p_resnet-gen9",
    ]  # fmt: skip
    assert table["row"].tolist() == list(range(len(reader))) and summary["rows"] == len(reader)
    assert (table["galaxy_id"] == manifest["galaxy_id"].astype(str)).all()
    np.testing.assert_array_equal(table["ra"], manifest["ra"])
    np.testing.assert_array_equal(table["dec"], manifest["dec"])
    for name, p in direct.items():
        np.testing.assert_allclose(table[f"p_{name}"], p, atol=1e-6)
    assert not np.allclose(direct["resnet-gen8"], direct["resnet-gen9"])  # two different finders
    catalog = json.loads((tmp_path / "cat" / "catalog.json").read_text())
    assert catalog["complete"] is True and [m["name"] for m in catalog["models"]] == [
        "resnet-gen8",
        "resnet-gen9",
    ]
    assert all(len(m["weights_sha256"]) == 64 and len(m["bundle_sha256"]) == 64 for m in catalog["models"])
    # top-k by the first model's probability, ties by row: the same as sorting in memory
    order = np.lexsort((np.arange(len(reader)), -direct["resnet-gen8"]))[:10]
    candidates = pd.read_parquet(tmp_path / "cat" / "candidates.parquet")
    assert candidates["row"].tolist() == order.tolist()
    assert (tmp_path / "cat" / "candidates.png").stat().st_size > 10_000
    # a rerun with other models into the same directory is refused, not mixed in
    with LocalScorer([world["a"]], device="cpu") as scorer, pytest.raises(LenscalError, match="other models"):
        score_survey(scorer, reader, tmp_path / "cat", part_rows=64)


def test_resume_after_kill_gives_exactly_one_row_per_cutout(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cat"
    command = [
        *LENSCAL, "score-survey", "--shards", str(world["shards"]), "--out", str(out),
        "--model", str(world["a"]), "--part-rows", "16", "--read-rows", "8", "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    records = out / "parts" / "_index"  # a part is committed once its record is written
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(records.glob("part-*.json"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The committed parts must be kept; a part file the kill left without its record (killed
    # between the two writes) is rightly scored again.
    committed = {r.stem for r in records.glob("part-*.json")}
    before = {
        p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("part-*.parquet") if p.stem in committed
    }
    n = len(ShardReader(world["shards"]))
    assert 3 <= len(before) < -(-n // 16), "the kill should land mid-run"
    assert json.loads((out / "catalog.json").read_text())["complete"] is False
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    table = pd.read_parquet(out / "parts")
    assert sorted(table["row"]) == list(range(n))  # none lost, none twice
    assert all((out / "parts" / name).stat().st_mtime_ns == t for name, t in before.items())  # kept


def _peak_rss_mb(command: list[str]) -> float:
    """Peak resident memory of ``command``, measured by a parent that only waits for it."""
    probe = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)"
    )
    # Two malloc arenas: how many glibc makes depends on which threads happen to contend (a
    # loaded machine makes more), a difference of tens of MB between two runs of one size.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    run = subprocess.run(
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=600, env=env
    )
    kb = float(run.stdout.strip().splitlines()[-1])
    assert kb > 0, run.stderr
    return kb / 1024


def test_memory_stays_flat_as_the_survey_grows(world: dict[str, Path], tmp_path: Path) -> None:
    from lenscal.data.ingest import ingest

    peaks = {}
    small, large = 1200, 3200  # past the first few parts' warm-up (~100 MB by 1,000 cutouts)
    for n in (small, large):
        manifest = make_toy_cutouts(tmp_path / f"toy{n}", n, seed=n)
        ingest(manifest, tmp_path / f"shards{n}", dtype="float16", progress=False)
        peaks[n] = _peak_rss_mb([
            *LENSCAL, "score-survey", "--shards", str(tmp_path / f"shards{n}"),
            "--out", str(tmp_path / f"c{n}"), "--model", str(world["a"]),
            "--part-rows", "256", "--read-rows", "128", "--device", "cpu",
        ])  # fmt: skip
        assert len(pd.read_parquet(tmp_path / f"c{n}" / "parts")) == n
    # Bounded per cutout, not by a fixed margin (which a loaded machine's timing crossed): a
    # run that held the survey would grow by a whole cutout per cutout (61 KB as float16,
    # 122 KB as float32); measured here 5 kB per cutout between 1,200 and 4,000 on a quiet
    # machine (+4 MB from 3,400 to 6,400) and up to 19 kB with two busy loops beside it:
    # allocator and kernel-cache noise, not data.
    cutout_kb = 3 * 101 * 101 * 2 / 1024
    growth_kb = (peaks[large] - peaks[small]) * 1024 / (large - small)
    assert growth_kb < cutout_kb / 2, (peaks, f"{growth_kb:.1f} kB per cutout")


def _info(name: str) -> ModelInfo:
    return ModelInfo(name, name, "bottlenecked_resnet", (3, 101, 101), PreprocessSpec(), 8, "onnx", "cpu",
                     name * 4, False, name * 4)  # fmt: skip


def test_meta_learner_beats_a_finder_only_where_it_does() -> None:
    rng = np.random.default_rng(3)
    n = 6000
    y = rng.random(n) < 0.3

    def finder(noise: np.ndarray) -> np.ndarray:
        return 1.2 * y + noise

    # Two finders with independent errors: together they see more than either alone.
    a = finder(rng.normal(size=n))
    b = finder(rng.normal(size=n))
    half = n // 2
    meta = fit_meta("stack", {"A": a[:half], "B": b[:half]}, y[:half], [_info("A"), _info("B")])
    verdict = compare(meta, {"A": a[half:], "B": b[half:]}, y[half:], bootstrap=300)
    assert verdict["members"]["A"]["beats"] and verdict["members"]["B"]["beats"]
    assert verdict["auc_meta"] > max(verdict["members"][m]["auc"] for m in "AB") + 0.02
    # B a noisy copy of A: nothing new to learn; no claim that the ensemble beats A.
    copy = a + rng.normal(scale=0.5, size=n)
    meta = fit_meta("stack", {"A": a[:half], "B": copy[:half]}, y[:half], [_info("A"), _info("B")])
    verdict = compare(meta, {"A": a[half:], "B": copy[half:]}, y[half:], bootstrap=300)
    assert not verdict["members"]["A"]["beats"]
    assert (
        verdict["members"]["A"]["delta_auc_95"][0] <= 0 <= verdict["members"]["A"]["delta_auc_95"][1] + 1e-3
    )
    assert verdict["members"]["B"]["beats"]  # the noisier copy alone is worse than A (and the stack)


def test_paper_iv_mlp_stacker_on_synthetic_scores() -> None:
    """The team's stacker: an MLP 2 -> 300 -> 1 on the finders' probabilities. On two finders
    with independent errors it beats both; its numpy forward pass (what the survey scorer
    runs) is the network's."""
    import torch

    rng = np.random.default_rng(5)
    n = 4000
    y = rng.random(n) < 0.3
    a, b = 2.0 * y + rng.normal(size=n) - 1.0, 2.0 * y + rng.normal(size=n) - 1.0
    half = n // 2
    meta = fit_meta(
        "stack", {"A": a[:half], "B": b[:half]}, y[:half], [_info("A"), _info("B")], stacker="paperIV"
    )
    assert meta.stacker == "paperIV" and meta.mlp is not None
    assert np.asarray(meta.mlp.w1).shape == (300, 2) and len(meta.mlp.w2) == 300
    verdict = compare(meta, {"A": a[half:], "B": b[half:]}, y[half:], bootstrap=300)
    assert verdict["members"]["A"]["beats"] and verdict["members"]["B"]["beats"]
    net = torch.nn.Sequential(torch.nn.Linear(2, 300), torch.nn.ReLU(), torch.nn.Linear(300, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(meta.mlp.w1))
        net[0].bias.copy_(torch.tensor(meta.mlp.b1))
        net[2].weight.copy_(torch.tensor([meta.mlp.w2]))
        net[2].bias.copy_(torch.tensor([meta.mlp.b2]))
        probabilities = torch.sigmoid(torch.from_numpy(np.stack([a, b], 1))).double()  # the team's "score"
        expected = torch.sigmoid(net(probabilities)).squeeze(1).numpy()
    np.testing.assert_allclose(meta.predict_proba({"A": a, "B": b}), expected, rtol=1e-12)
    saved = load_meta(meta.save(Path(tempfile.mkdtemp()) / "meta.json"))
    np.testing.assert_allclose(saved.predict_proba({"A": a, "B": b}), expected, rtol=1e-12)


def test_meta_fit_records_the_ensemble_and_the_survey_scores_it(
    world: dict[str, Path], tmp_path: Path
) -> None:
    registry = f"sqlite:///{tmp_path / 'r.sqlite'}"
    fit = subprocess.run(
        [*LENSCAL, "meta", "fit", "--shards", str(world["shards"]), "--model", str(world["a"]),
         "--model", str(world["b"]), "--out", str(tmp_path / "meta"), "--bootstrap", "50",
         "--registry-url", registry, "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert "vs resnet-gen8" in fit.stdout and "vs resnet-gen9" in fit.stdout
    metrics = json.loads((tmp_path / "meta" / "metrics.json").read_text())
    assert {"auc", "pauc", "ece", "recall_at_fpr_1e-3", "thresholds", "comparison"} <= set(metrics)
    manifest = ShardReader(world["shards"]).manifest()
    assert metrics["stacker"] == "paperIV" and (metrics["fit_split"], metrics["test_split"]) == (
        "train",
        "val",
    )
    assert metrics["n"] == int((manifest["split"] == "val").sum())
    assert set(metrics["auc_bootstrap"]) == {"resnet-gen8", "resnet-gen9", "paperIV_ensemble"}
    assert metrics["auc_bootstrap"]["paperIV_ensemble"]["resamples"] == 50
    from lenscal.registry.store import Registry

    record = Registry(registry).get("paperIV_ensemble")
    assert record.status == "Trained" and {p["role"] for p in record.parents} <= {"member"}
    learner = load_meta(tmp_path / "meta")
    out = tmp_path / "cat"
    run = subprocess.run(
        [*LENSCAL, "score-survey", "--shards", str(world["shards"]), "--out", str(out),
         "--model", str(world["a"]), "--model", str(world["b"]), "--meta", str(tmp_path / "meta"),
         "--top-k", "5", "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    table = pd.read_parquet(out / "parts")
    expected = learner.predict_proba(
        {m: table[f"logit_{m}"].to_numpy() for m in ("resnet-gen8", "resnet-gen9")}
    )
    np.testing.assert_allclose(table["p_paperIV_ensemble"], expected, rtol=1e-12)
    assert pd.read_parquet(out / "candidates.parquet")["p_paperIV_ensemble"].is_monotonic_decreasing
    # the same split for fitting and testing is refused, naming both; lenscal's logistic stacker stays
    same = subprocess.run(
        [*LENSCAL, "meta", "fit", "--shards", str(world["shards"]), "--model", str(world["a"]), "--model",
         str(world["b"]), "--out", str(tmp_path / "same"), "--fit-split", "val", "--test-split", "val",
         "--no-registry", "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert (
        same.returncode == 2
        and "'val' equals --test-split 'val'" in same.stderr
        and "Traceback" not in same.stderr
    )
    logistic = subprocess.run(
        [*LENSCAL, "meta", "fit", "--shards", str(world["shards"]), "--model", str(world["a"]), "--model",
         str(world["b"]), "--out", str(tmp_path / "logistic"), "--stacker", "logistic", "--bootstrap", "20",
         "--no-registry", "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert logistic.returncode == 0, logistic.stderr
    assert load_meta(tmp_path / "logistic").stacker == "logistic"
    # a meta-learner is refused for a model with other weights under a member's name
    other = small_bundle(tmp_path / "other", spec=PreprocessSpec(clip_range=7.0), run_id="resnet-gen8")
    with (
        LocalScorer([other, world["b"]], device="cpu") as scorer,
        pytest.raises(LenscalError, match="other weights or preprocessing"),
    ):
        score_survey(scorer, ShardReader(world["shards"]), tmp_path / "cat2", meta=learner)


def test_planner_against_hand_computed_times(tmp_path: Path) -> None:
    rates = {
        "device": "H100",
        "source": "test",
        "stages": {
            "read": {"cutouts_per_s": 12_000, "per": "process"},
            "wire": {"cutouts_per_s": 35_000, "per": "replica"},
            "preprocess": {"cutouts_per_s": 200_000, "per": "gpu"},
            "model": {"cutouts_per_s": 50_000, "per": "gpu"},
        },
    }
    path = tmp_path / "rates.json"
    path.write_text(json.dumps(rates))
    # one GPU, 4 readers: read 48k/s, wire 35k/s, device 1/(1/200k + 1/50k) = 40k/s -> wire
    one = plan(43_000_000, read_rates(path), gpus=1)
    assert one.bottleneck == "wire" and one.wall_s == pytest.approx(43e6 / 35_000)
    # 8 GPUs, 8 readers: read 96k/s, wire 280k/s, device 320k/s -> read
    eight = plan(43_000_000, read_rates(path), gpus=8, readers=8)
    assert eight.bottleneck == "read" and eight.wall_s == pytest.approx(43e6 / 96_000)
    # a faster wire and plenty of readers: the device, mostly the model (80% of its time)
    rates["stages"]["wire"]["cutouts_per_s"] = 100_000
    path.write_text(json.dumps(rates))
    fast = plan(43_000_000, read_rates(path), gpus=1, readers=100)
    assert fast.bottleneck == "device: model 80% + preprocess 20%"
    assert fast.wall_s == pytest.approx(43e6 / 40_000)
    del rates["stages"]["read"]
    path.write_text(json.dumps(rates))
    partial = plan(1000, read_rates(path))
    assert "read       not measured (left out)" in "\n".join(partial.lines())
    path.write_text(json.dumps({"stages": {"disk": {"cutouts_per_s": 1}}}))
    with pytest.raises(LenscalError, match="unknown stage 'disk'"):
        read_rates(path)
    cli = subprocess.run([*LENSCAL, "plan", "--n", "1000", "--rates", str(tmp_path / "none.json")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert cli.returncode == 2 and "bench/survey.py" in cli.stderr
