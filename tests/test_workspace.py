"""Results directories hold up: a truncated, rewritten or foreign part is scored again (never
merged), a second run into one --out is refused naming the first, and the lock dies with its
holder (kill -9 included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenscal.errors import LenscalError
from lenscal.workspace import LOCK_NAME, Parts, RunLockedError, clear_directory, run_lock

from .conftest import LENSCAL


def _frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(offset, offset + n), "p": np.linspace(0, 1, n)})


# --- grids and survey catalogues end to end -------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .worlds import grid_world

    return grid_world(tmp_path_factory.mktemp("workspace"), bundle="finder")


def test_a_committed_part_is_reused_only_while_intact(tmp_path: Path) -> None:
    parts = Parts(tmp_path, run="run-a")
    for k in range(4):
        parts.commit(k, _frame(16, 16 * k))
    assert parts.pending(range(5), {k: 16 for k in range(5)}) == [4]  # intact parts kept
    # truncated in half
    data = parts.path(1).read_bytes()
    parts.path(1).write_bytes(data[: len(data) // 2])
    # rewritten as a valid Parquet file with 8 of its 16 rows
    _frame(8, 32).to_parquet(parts.path(2), index=False)
    assert "bytes" in str(parts.problem(1)) and parts.problem(2) is not None
    assert parts.pending(range(4), {k: 16 for k in range(4)}) == [1, 2]
    # a foreign part: another run's part and record copied in
    other = Parts(tmp_path / "other", run="run-b")
    other.commit(3, _frame(16, 48))
    os.replace(other.path(3), parts.path(3))
    os.replace(other.record_path(3), parts.record_path(3))
    assert parts.problem(3) == "it belongs to another run"
    # committed but killed before its record: not trusted either
    parts.record_path(0).unlink()
    assert "no commit record" in str(parts.problem(0))
    with pytest.raises(LenscalError, match=r"part-00002\.parquet"):
        parts.read(2)
    # a reader of the parts directory sees only parts, never the records
    parts.commit(0, _frame(16))
    assert set(pd.read_parquet(parts.path(0)).columns) == {"row", "p"}
    assert not any(p.suffix == ".json" for p in parts.root.glob("*"))


def test_a_held_directory_is_refused_naming_the_holder_and_freed_by_kill_9(
    world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, pathlib; from lenscal.workspace import run_lock\n"
         "with run_lock(sys.argv[1], 'grid run'):\n"
         "    pathlib.Path(sys.argv[2]).touch(); time.sleep(600)",
         str(out), str(ready)],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and holder.poll() is None, "the holder did not start"
            time.sleep(0.02)
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on "), run_lock(out):
            pass
        # the command line: one line, exit 2, naming the holder; the held run untouched
        (out / "meta.json").write_text("{}")
        refused = subprocess.run(
            [*LENSCAL, "grid", "run", "--grid", "mock_demo", "--hosts", str(world / "shards"),
             "--model", str(world / "finder"), "--out", str(out), "--restart"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert f"pid {holder.pid}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert (out / "meta.json").read_text() == "{}"  # --restart did not clear a held directory
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(out, "resume"):  # the kernel released the dead holder's lock
        clear_directory(out)
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # --restart keeps the lock file


def test_the_lock_is_reentrant_within_one_process(tmp_path: Path) -> None:
    with run_lock(tmp_path / "run", "flow"), run_lock(tmp_path / "run", "its step"):
        pass
    with run_lock(tmp_path / "run"):  # released after both
        assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_out_naming_a_file_or_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LenscalError, match="is a file, not a directory"), run_lock(tmp_path / "file"):
        pass
    with pytest.raises(LenscalError, match="parent is not a dir"), run_lock(tmp_path / "file" / "below"):
        pass
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(LenscalError, match=r"cannot create it|not writable"), run_lock(locked / "run"):
            pass


def _grid(world: Path, out: Path) -> pd.DataFrame:
    from lenscal.backends import open_injector, open_scorer
    from lenscal.data.shards import ShardReader
    from lenscal.selection.config import load_grid
    from lenscal.selection.runner import run_grid

    with open_scorer(model=world / "finder") as scorer, open_injector(device="cpu") as injector:
        run_grid(load_grid("mock_demo", per_cell=4), hosts=ShardReader(world / "shards"), scorer=scorer,
                 injector=injector, out=out, chunk_size=16, progress=False)  # fmt: skip
    return pd.read_parquet(out / "injections.parquet")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_damaged_grid_part_is_scored_again_not_merged(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid"
    first = _grid(world, out)
    assert len(first) == 27 * 4
    parts = out / "parts"
    data = (parts / "part-00001.parquet").read_bytes()
    (parts / "part-00001.parquet").write_bytes(data[: len(data) // 2])  # cut in half
    half = pd.read_parquet(parts / "part-00002.parquet")
    half.head(8).to_parquet(parts / "part-00002.parquet", index=False)  # 8 of its 16 rows
    again = _grid(world, out)
    assert len(again) == 27 * 4 and again["number"].is_unique  # 216 -> not 208
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_damaged_survey_part_is_scored_again(world: Path, tmp_path: Path) -> None:
    from lenscal.data.shards import ShardReader
    from lenscal.scoring.local import LocalScorer
    from lenscal.scoring.survey import score_survey

    reader = ShardReader(world / "shards")
    with LocalScorer([world / "finder"], device="cpu") as scorer:
        score_survey(scorer, reader, tmp_path / "cat", part_rows=64, top_k=5, progress=False)
        first = pd.read_parquet(tmp_path / "cat" / "parts")
        victim = tmp_path / "cat" / "parts" / "part-00002.parquet"
        pd.read_parquet(victim).head(10).to_parquet(victim, index=False)
        summary = score_survey(scorer, reader, tmp_path / "cat", part_rows=64, top_k=5, progress=False)
    again = pd.read_parquet(tmp_path / "cat" / "parts")
    assert summary["rows"] == len(reader) and sorted(again["row"]) == list(range(len(reader)))
    pd.testing.assert_frame_equal(
        first.sort_values("row").reset_index(drop=True), again.sort_values("row").reset_index(drop=True)
    )
