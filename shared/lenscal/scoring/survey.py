"""Scoring a whole shard directory (a survey) in resumable parts: rows are cut into parts of
``part_rows``; each scored part is committed atomically as ``parts/part-NNNNN.parquet``
(galaxy_id, row, logit, probability), so a run killed part-way and started again scores
only what is missing, and several workers can score disjoint sets of parts. ``assemble``
concatenates them into ``scores.parquet`` once all exist."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_path, atomic_write_text
from lenscal.progress import progress_bar
from lenscal.scoring.api import Scorer
from lenscal.scoring.rows import score_rows

PART_ROWS = 65_536


def survey_rows(reader: ShardReader, split: str | None = None) -> np.ndarray:
    table = reader.manifest()
    if split is None:
        return np.arange(len(reader))
    if "split" not in table.columns:
        raise LenscalError(f"{reader.directory}: no 'split' column to select {split!r} from")
    return np.flatnonzero(table["split"].to_numpy() == split)


def part_count(n_rows: int, part_rows: int = PART_ROWS) -> int:
    return (n_rows + part_rows - 1) // part_rows


def _part(out: Path, k: int) -> Path:
    return out / "parts" / f"part-{k:05d}.parquet"


def pending_parts(out: str | Path, n_rows: int, part_rows: int = PART_ROWS) -> list[int]:
    return [k for k in range(part_count(n_rows, part_rows)) if not _part(Path(out), k).is_file()]


def score_parts(
    scorer: Scorer,
    reader: ShardReader,
    out: str | Path,
    rows: np.ndarray,
    parts: Sequence[int],
    *,
    model: str = "",
    part_rows: int = PART_ROWS,
    read_rows: int = 8192,
    progress: bool | None = None,
) -> int:
    """Score parts ``parts`` of ``rows`` not yet committed; returns cutouts scored."""
    out = Path(out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    ids = reader.manifest()["galaxy_id"].astype(str).to_numpy()
    todo = [k for k in parts if not _part(out, k).is_file()]
    scored = 0
    total = sum(len(rows[k * part_rows : (k + 1) * part_rows]) for k in todo)
    with progress_bar(total, "score", enabled=progress) as advance:
        for k in todo:
            block = rows[k * part_rows : (k + 1) * part_rows]
            result = score_rows(
                scorer, reader, block, model=model, read_rows=read_rows, label=None, advance=advance
            )
            frame = pd.DataFrame(
                {
                    "galaxy_id": ids[block],
                    "row": block,
                    "logit": result.logits,
                    "probability": result.probabilities,
                }
            )
            with atomic_path(_part(out, k)) as tmp:
                frame.to_parquet(tmp, index=False)
            scored += block.size
    return scored


def assemble(out: str | Path, n_rows: int, part_rows: int = PART_ROWS, meta: dict | None = None) -> Path:
    """``scores.parquet`` from every part (refused while parts are missing)."""
    out = Path(out)
    missing = pending_parts(out, n_rows, part_rows)
    if missing:
        raise LenscalError(f"{out}: {len(missing)} part(s) not scored yet, e.g. {missing[:5]}")
    frames = [pd.read_parquet(_part(out, k)) for k in range(part_count(n_rows, part_rows))]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(table) != n_rows or (len(table) and table["row"].duplicated().any()):
        raise LenscalError(
            f"{out}: parts hold {len(table)} rows for {n_rows} (stale parts?); rerun with a fresh --out"
        )
    path = out / "scores.parquet"
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    if meta is not None:
        atomic_write_text(out / "meta.json", json.dumps(meta, indent=1, default=str) + "\n")
    return path
