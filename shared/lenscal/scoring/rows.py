"""Scoring rows of a shard directory (or arrays already in memory) through a Scorer in
chunks, so memory stays bounded: the one loop that evaluation, grids (their negatives),
diagnostics, survey scoring and `lenscal score` share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.preprocess_spec import PreprocessOverride
from lenscal.progress import progress_bar
from lenscal.scoring.api import Progress, Scorer, ScoreResult

#: Cutouts read and sent per scorer call (the scorer splits them into its own messages).
READ_ROWS = 4096


def split_rows(reader: ShardReader, split: str | None = None) -> np.ndarray:
    """Shard rows of ``split`` (all rows when None), in row order."""
    if split is None:
        return np.arange(len(reader))
    table = reader.manifest()
    if "split" not in table.columns:
        raise LenscalError(f"{reader.directory}: no 'split' column to select {split!r} from")
    values = table["split"].to_numpy()
    check_split(split, values, reader.directory)
    return np.flatnonzero(values == split)


def check_split(split: str, values: np.ndarray, where: object) -> None:
    """A split no row has is a typo, not an empty selection: refuse it naming the ones there."""
    present = sorted({str(v) for v in np.unique(values.astype(str))})
    if split not in present:
        raise LenscalError(f"--split {split!r}: no row of {where} has it; the splits there are {present}")


def score_rows(
    scorer: Scorer,
    reader: ShardReader,
    rows: np.ndarray,
    *,
    model: str = "",
    override: PreprocessOverride | None = None,
    embeddings: bool = False,
    read_rows: int = READ_ROWS,
    label: str | None = "score",
    progress: bool | None = None,
    advance: Progress | None = None,
) -> ScoreResult:
    """Score shard rows ``rows`` (raw cutouts, read in their stored dtype: the wire carries
    float16 shards as they are). ``label``: a progress bar of that name (None: none);
    ``advance``: a caller's progress callback instead."""
    parts: list[ScoreResult] = []
    with progress_bar(len(rows), label or "", enabled=progress if label else False) as bar:
        tick = advance or bar
        for start in range(0, len(rows), read_rows):
            block = rows[start : start + read_rows]
            parts.append(
                scorer.score(
                    reader.read(block, dtype=None),
                    model=model,
                    override=override,
                    return_embeddings=embeddings,
                    progress=tick,
                )
            )
    return concat(parts)


def score_arrays(
    scorer: Scorer,
    images: np.ndarray,
    *,
    model: str = "",
    override: PreprocessOverride | None = None,
    embeddings: bool = False,
    read_rows: int = READ_ROWS,
) -> ScoreResult:
    """Score (N, 3, H, W) cutouts already in memory, ``read_rows`` per scorer call."""
    return concat(
        [
            scorer.score(
                images[s : s + read_rows], model=model, override=override, return_embeddings=embeddings
            )
            for s in range(0, len(images), read_rows)
        ]
    )


def concat(parts: Sequence[ScoreResult]) -> ScoreResult:
    if not parts:
        raise LenscalError("nothing to score: no rows were given")
    embeddings = [p.embeddings for p in parts]
    return ScoreResult(
        logits=np.concatenate([p.logits for p in parts]),
        probabilities=np.concatenate([p.probabilities for p in parts]),
        embeddings=None if any(e is None for e in embeddings) else np.concatenate(embeddings),  # type: ignore[arg-type]
        model_id=parts[0].model_id,
        spec=parts[0].spec,
    )
