"""Packed shards: exact round trip of real cutouts, atomic commits, resume, integrity checks."""

from __future__ import annotations

import hashlib
import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenscal.data.cutouts import read_cutout, write_cutout_npz
from lenscal.data.ingest import ingest
from lenscal.data.shards import ShardIndex, ShardReader
from lenscal.errors import CutoutError, ShardError

from .conftest import make_toy_cutouts


def test_real_cutouts_round_trip_float32_exactly(tmp_path: Path, real_manifest: Path) -> None:
    report = ingest(real_manifest, tmp_path / "s", shard_size=4, progress=False)
    assert (report.rows, report.shards_written, report.dtype) == (6, 2, "float32")
    reader = ShardReader(tmp_path / "s")
    manifest = pd.read_parquet(real_manifest)
    expected = np.stack([read_cutout(p) for p in manifest.cutout_path])
    assert len(reader) == 6
    np.testing.assert_array_equal(reader.read(range(6)), expected)  # NaNs compare equal here
    np.testing.assert_array_equal(reader[5], expected[5])
    np.testing.assert_array_equal(reader[-1], expected[5])
    order = [5, 0, 3, 3, 1]
    np.testing.assert_array_equal(reader.read(order), expected[order])
    out = pd.read_parquet(tmp_path / "s" / "manifest.parquet")
    assert out.galaxy_id.tolist() == manifest.galaxy_id.tolist()
    assert out.shard.tolist() == [0, 0, 0, 0, 1, 1] and out.shard_row.tolist() == [0, 1, 2, 3, 0, 1]
    for i, row in out.iterrows():
        assert row.cutout_sha256 == hashlib.sha256(expected[i].tobytes()).hexdigest()
        assert row.nan_count == int(np.isnan(expected[i]).sum())


def test_float16_storage_is_recorded_and_close(tmp_path: Path, real_manifest: Path) -> None:
    ingest(real_manifest, tmp_path / "s", dtype="float16", progress=False)
    reader = ShardReader(tmp_path / "s")
    assert json.loads((tmp_path / "s" / "shards.json").read_text())["dtype"] == "float16"
    manifest = pd.read_parquet(real_manifest)
    expected = np.stack([read_cutout(p) for p in manifest.cutout_path])
    got = reader.read(range(6))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected.astype(np.float16).astype(np.float32))


def test_reader_errors(tmp_path: Path, real_manifest: Path) -> None:
    ingest(real_manifest, tmp_path / "s", progress=False)
    reader = ShardReader(tmp_path / "s")
    with pytest.raises(IndexError, match="row 6 out of range for 6"):
        reader.read([0, 6])
    with pytest.raises(IndexError):
        reader[-7]
    with pytest.raises(ShardError, match="not a shard directory"):
        ShardReader(tmp_path)
    # A reader crosses process boundaries (DataLoader workers) without its memory maps.
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.read([2, 1]), reader.read([2, 1]))


def test_changed_or_truncated_shard_is_refused(tmp_path: Path, real_manifest: Path) -> None:
    ingest(real_manifest, tmp_path / "s", shard_size=4, progress=False)
    shard = tmp_path / "s" / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last record
    shard.write_bytes(bytes(data))
    assert ShardReader(tmp_path / "s").verify_records() == [5]
    with pytest.raises(ShardError, match="SHA-256 does not match"):
        ShardReader(tmp_path / "s", verify=True)
    shard.write_bytes(bytes(data[:-100]))
    with pytest.raises(ShardError, match="does not match the index"):
        ShardReader(tmp_path / "s")


def test_failed_ingest_commits_whole_shards_only_and_resumes(tmp_path: Path) -> None:
    manifest = make_toy_cutouts(tmp_path / "c", 10)
    victim = tmp_path / "c" / "c00006.npz"
    good = victim.read_bytes()
    victim.write_bytes(good[:100])  # unreadable: the ingest stops in shard 1 (rows 4-7)
    with pytest.raises(CutoutError, match=r"c00006\.npz"):
        ingest(manifest, tmp_path / "s", shard_size=4, progress=False)
    assert not list((tmp_path / "s").glob(".*partial*"))
    with pytest.raises(ShardError, match=r"ingest incomplete \(1 of 3 shards committed\)"):
        ShardReader(tmp_path / "s")
    partial = ShardReader(tmp_path / "s", allow_partial=True)
    assert len(partial) == 4
    victim.write_bytes(good)
    report = ingest(manifest, tmp_path / "s", shard_size=4, progress=False)
    assert (report.shards_reused, report.shards_written) == (1, 2)
    fresh = ingest(manifest, tmp_path / "fresh", shard_size=4, progress=False)
    assert fresh.shards_written == 3
    for k in range(3):
        name = f"shard-0000{k}.npy"
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()


def test_skip_mode_records_unreadable_cutouts(tmp_path: Path) -> None:
    manifest = make_toy_cutouts(tmp_path / "c", 5)
    (tmp_path / "c" / "c00002.npz").write_bytes(b"garbage")
    report = ingest(manifest, tmp_path / "s", on_error="skip", progress=False)
    assert [row for row, _ in report.failed_rows] == [2]
    out = pd.read_parquet(tmp_path / "s" / "manifest.parquet")
    assert "unreadable or truncated NPZ" in out.ingest_error[2] and out.ingest_error.isna().sum() == 4
    assert np.isnan(ShardReader(tmp_path / "s")[2]).all()


def test_other_manifest_into_same_directory_is_refused(tmp_path: Path) -> None:
    ingest(make_toy_cutouts(tmp_path / "a", 3), tmp_path / "s", progress=False)
    other = make_toy_cutouts(tmp_path / "b", 4, seed=1)
    with pytest.raises(ShardError, match="already holds shards built from another manifest"):
        ingest(other, tmp_path / "s", progress=False)
    ingest(other, tmp_path / "s", overwrite=True, progress=False)
    assert len(ShardReader(tmp_path / "s")) == 4


def test_float16_overflow_and_bad_options_are_refused(tmp_path: Path) -> None:
    write_cutout_npz(tmp_path / "hot.npz", np.full((3, 101, 101), 70000.0, np.float32))
    pd.DataFrame({"galaxy_id": ["hot"], "cutout_path": ["hot.npz"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(CutoutError, match="exceeds the float16 range"):
        ingest(tmp_path / "m.parquet", tmp_path / "s", dtype="float16", progress=False)
    with pytest.raises(ShardError, match="not a storage dtype"):
        ingest(tmp_path / "m.parquet", tmp_path / "s", dtype="bfloat16", progress=False)
    pd.DataFrame({"galaxy_id": ["hot"]}).to_parquet(tmp_path / "nopath.parquet")
    with pytest.raises(Exception, match="required column 'cutout_path' is missing"):
        ingest(tmp_path / "nopath.parquet", tmp_path / "s2", progress=False)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_ingest_leaves_no_accepted_half_shard_and_resumes(tmp_path: Path) -> None:
    manifest = make_toy_cutouts(tmp_path / "c", 400, fmt="fits")
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "lenscal.cli", "ingest", "--manifest", str(manifest), "--out", str(out)]
    cmd += ["--shard-size", "16", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        index = out / "shards.json"
        if index.exists() and len(json.loads(index.read_text())["shards"]) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    index = ShardIndex.read(out)
    assert not index.complete and 3 <= len(index.shards) < 25, "the kill should land mid-ingest"
    with pytest.raises(ShardError, match="ingest incomplete"):
        ShardReader(out)
    partial = ShardReader(out, allow_partial=True)
    sources = pd.read_parquet(manifest).cutout_path
    rows = np.arange(len(partial))
    expected = np.stack([read_cutout(tmp_path / "c" / sources[i]) for i in rows])
    np.testing.assert_array_equal(partial.read(rows), expected)
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    assert resumed.returncode == 0, resumed.stderr
    reader = ShardReader(out, verify=True)
    assert len(reader) == 400 and reader.verify_records() == []
    everything = np.stack([read_cutout(tmp_path / "c" / p) for p in sources])
    np.testing.assert_array_equal(reader.read(range(400)), everything)


def test_read_range_equals_random_access_across_shards(tmp_path: Path) -> None:
    manifest = make_toy_cutouts(tmp_path / "toy", 30, seed=2)
    ingest(manifest, tmp_path / "shards", dtype="float16", shard_size=7, progress=False)
    reader = ShardReader(tmp_path / "shards")
    assert len(reader.index.shards) == 5
    for start, stop in ((0, 30), (3, 20), (7, 14), (29, 30), (12, 12)):
        got = reader.read_range(start, stop)
        assert got.dtype == np.float16 and got.shape == (stop - start, 3, 101, 101)
        np.testing.assert_array_equal(got, reader.read(np.arange(start, stop), dtype=None))
    with pytest.raises(IndexError, match="out of range"):
        reader.read_range(25, 31)
