"""Scoring a whole survey (a shard directory) into a partitioned Parquet catalogue.

The shard rows are cut into parts of ``part_rows`` consecutive rows. A part is read once,
``read_rows`` cutouts at a time (the next chunk read while the current one is scored),
scored by every model, and committed atomically as ``parts/part-NNNNN.parquet`` with
columns ``galaxy_id, ra, dec, row`` and, per model ``m``, ``logit_m`` and ``p_m`` (plus
``p_<meta>`` when a meta-learner is given). Memory is bounded by ``read_rows``,
``part_rows`` and the manifest's row-group size, never by the survey size: no array of
all rows is ever built. A run killed part-way and started again scores only the missing
parts, so every cutout ends up in exactly one row. ``catalog.json`` names the shards, the
models (name, model_id, weights and bundle SHA-256) and the part size; a rerun with other
models or another part size is refused instead of mixing catalogues.

``candidates``: the top-k cutouts by one probability column, streamed over the parts with a
bounded table, written as ``candidates.parquet`` and a PNG gallery of their cutouts.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_path
from lenscal.progress import progress_bar
from lenscal.scoring.api import ModelInfo, Scorer, sigmoid
from lenscal.scoring.meta import MetaLearner
from lenscal.scoring.rows import check_split
from lenscal.workspace import PARTS, Parts, canonical_sha256, claim, results_directory, run_lock, write_json

PART_ROWS = 65_536
READ_ROWS = 4096
CATALOG_FORMAT = "lenscal-catalog/1"
#: Manifest columns carried into the catalogue (ra, dec in degrees, ICRS, as ingested).
POSITION_COLUMNS = ("galaxy_id", "ra", "dec")


@dataclass
class CatalogPlan:
    """What a catalogue directory holds: written first, checked on every resume."""

    shards: str
    n_rows: int
    part_rows: int
    split: str | None
    models: list[dict[str, str]]  # name, model_id, weights_sha256, bundle_sha256
    meta: dict[str, Any] | None = None  # the meta-learner's name, features and file hash
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> int:
        return (self.n_rows + self.part_rows - 1) // self.part_rows

    def identity(self) -> dict[str, Any]:
        """What must match for a resumed run to add to this catalogue."""
        return {
            "format": CATALOG_FORMAT,
            "shards": self.shards,
            "n_rows": self.n_rows,
            "part_rows": self.part_rows,
            "split": self.split,
            "models": self.models,
            "meta": self.meta,
        }


def model_entries(infos: Sequence[ModelInfo]) -> list[dict[str, str]]:
    return [
        {
            "name": i.name,
            "model_id": i.model_id,
            "weights_sha256": i.weights_sha256,
            "bundle_sha256": i.bundle_sha256,
        }
        for i in infos
    ]


def catalog_parts(out: str | Path, plan: CatalogPlan) -> Parts:
    """The catalogue's committed parts, verified against this plan (lenscal.workspace)."""
    return Parts(Path(out), canonical_sha256(plan.identity()))


def part_path(out: Path, k: int) -> Path:
    return Path(out) / PARTS / f"part-{k:05d}.parquet"


def expected_rows(plan: CatalogPlan) -> dict[int, int] | None:
    """Rows of each part, when the plan knows them (not under a split filter)."""
    if plan.split is not None:
        return None
    return {k: min(plan.part_rows, plan.n_rows - k * plan.part_rows) for k in range(plan.parts)}


def open_catalog(out: str | Path, plan: CatalogPlan) -> Path:
    """Create ``out`` for ``plan``, or check that an existing catalogue there is the same one
    (lenscal.workspace.claim: another catalogue is refused, naming what differs)."""
    out = results_directory(out)
    identity = plan.identity()
    digest = canonical_sha256(identity)
    claim(out, "catalog.json", digest, what="catalogue", identity=identity)
    if (out / "catalog.json").is_file():
        return out
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    write_json(out / "catalog.json", {**identity, "definition_sha256": digest, "complete": False})
    return out


def pending_parts(out: str | Path, plan: CatalogPlan, parts: Sequence[int] | None = None) -> list[int]:
    """Parts (of ``parts``, default all) without an intact committed file: a truncated,
    rewritten or foreign part is scored again."""
    wanted = range(plan.parts) if parts is None else parts
    return catalog_parts(out, plan).pending(wanted, expected_rows(plan))


class ManifestSlices:
    """Columns of a manifest for a range of rows, read row group by row group (memory bounded
    by the row-group size, not the manifest's length)."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.file = pq.ParquetFile(path)
        present = set(self.file.schema_arrow.names)
        missing = [c for c in columns if c not in present]
        if missing:
            raise LenscalError(f"{path}: the manifest has no column(s) {missing}")
        self.columns = list(columns)
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def read(self, start: int, stop: int) -> pd.DataFrame:
        first = int(np.searchsorted(self.starts, start, side="right") - 1)
        last = int(np.searchsorted(self.starts, stop, side="left"))
        groups = list(range(first, max(last, first + 1)))
        table = self.file.read_row_groups(groups, columns=self.columns).to_pandas()
        offset = start - int(self.starts[first])
        return table.iloc[offset : offset + (stop - start)].reset_index(drop=True)


def _prefetched(reader: ShardReader, rows: np.ndarray, read_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, cutouts) chunks of ``rows`` in their stored dtype, the next one read by a
    thread while the caller scores the current one (two chunks in memory at most)."""
    chunks: queue.Queue[tuple[int, np.ndarray] | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for start in range(0, rows.size, read_rows):
                if stop.is_set():
                    return
                block = rows[start : start + read_rows]
                # File reads over the block's span (not the memory maps): no shard pages stay
                # mapped, so resident memory does not grow with the survey.
                span = reader.read_range(int(block[0]), int(block[-1]) + 1)
                contiguous = block.size == span.shape[0]
                chunks.put((start, span if contiguous else span[block - block[0]]))
            chunks.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            chunks.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="lenscal-survey-read")
    thread.start()
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # also when scoring failed: let the reader finish its put and stop
        stop.set()
        with contextlib.suppress(queue.Empty):
            chunks.get_nowait()
        thread.join(timeout=60)


def score_parts(
    scorer: Scorer,
    reader: ShardReader,
    out: str | Path,
    plan: CatalogPlan,
    parts: Sequence[int],
    *,
    meta: MetaLearner | None = None,
    read_rows: int = READ_ROWS,
    progress: bool | None = None,
) -> int:
    """Score the parts ``parts`` of ``plan`` not yet committed; returns cutouts scored."""
    out = Path(out)
    names = [m["name"] for m in plan.models]
    columns = [*POSITION_COLUMNS, *(["split"] if plan.split else [])]
    manifest = ManifestSlices(reader.directory / "manifest.parquet", columns)
    todo = pending_parts(out, plan, parts)
    store = catalog_parts(out, plan)
    total = sum(min(plan.part_rows, plan.n_rows - k * plan.part_rows) for k in todo)
    scored = 0
    with progress_bar(total * len(names), "score-survey", enabled=progress) as advance:
        for k in todo:
            start, stop = k * plan.part_rows, min((k + 1) * plan.part_rows, plan.n_rows)
            table = manifest.read(start, stop)
            rows = np.arange(start, stop, dtype=np.int64)
            if plan.split:
                keep = table["split"].to_numpy() == plan.split
                table, rows = table[keep].reset_index(drop=True), rows[keep]
            logits = {name: np.empty(rows.size, np.float32) for name in names}
            for offset, cutouts in _prefetched(reader, rows, read_rows):
                for name in names:
                    result = scorer.score(cutouts, model=name, progress=advance)
                    logits[name][offset : offset + len(cutouts)] = result.logits
            frame = pd.DataFrame(
                {
                    "galaxy_id": table["galaxy_id"].astype(str).to_numpy(),
                    "ra": table["ra"].to_numpy(np.float64),
                    "dec": table["dec"].to_numpy(np.float64),
                    "row": rows,
                }
            )
            for name in names:
                frame[f"logit_{name}"] = logits[name]
                frame[f"p_{name}"] = sigmoid(logits[name])
            if meta is not None:
                frame[f"p_{meta.name}"] = meta.predict_proba(logits)
            store.commit(k, frame)
            scored += rows.size
    return scored


def make_plan(
    scorer: Scorer,
    reader: ShardReader,
    *,
    models: Sequence[str] = (),
    meta: MetaLearner | None = None,
    split: str | None = None,
    part_rows: int = PART_ROWS,
) -> CatalogPlan:
    """The catalogue of ``reader`` scored by ``models`` (names on ``scorer``; none: every
    loaded model) and ``meta``'s members, checked against what the scorer serves."""
    if part_rows <= 0:
        raise LenscalError("part_rows must be positive")
    loaded = scorer.model_info()
    by_name = {i.name: i for i in loaded}
    wanted = list(models) or [i.name for i in loaded]
    if meta is not None:
        wanted += [m.name for m in meta.members if m.name not in wanted]
    unknown = [m for m in wanted if m not in by_name]
    if unknown:
        raise LenscalError(f"model(s) {unknown} not loaded; the scorer serves {sorted(by_name)}")
    chosen = [by_name[m] for m in wanted]
    meta_entry = None
    if meta is not None:
        meta.check_members(chosen)
        meta_entry = {"name": meta.name, "sha256": canonical_sha256(meta.to_json())}
    if split is not None:
        _check_survey_split(reader, split)
    return CatalogPlan(
        shards=str(reader.directory.resolve()),
        n_rows=len(reader),
        part_rows=part_rows,
        split=split,
        models=model_entries(chosen),
        meta=meta_entry,
        extra={"shard_index_sha256": canonical_sha256(reader.index.to_json())},
    )


def _check_survey_split(reader: ShardReader, split: str) -> None:
    path = reader.directory / "manifest.parquet"
    if "split" not in pq.read_schema(path).names:
        raise LenscalError(f"{reader.directory}: no 'split' column to select {split!r} from")
    values = pq.read_table(path, columns=["split"]).column("split").unique()  # one column, not the rows
    check_split(split, values.to_numpy(zero_copy_only=False), reader.directory)


def rank_column(plan: CatalogPlan) -> str:
    """What candidates are ranked by: the meta-learner's probability, else the first model's."""
    return f"p_{plan.meta['name']}" if plan.meta else f"p_{plan.models[0]['name']}"


def score_survey(
    scorer: Scorer,
    reader: ShardReader,
    out: str | Path,
    *,
    models: Sequence[str] = (),
    meta: MetaLearner | None = None,
    split: str | None = None,
    part_rows: int = PART_ROWS,
    read_rows: int = READ_ROWS,
    top_k: int = 1000,
    rank_by: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """The whole job in this process: plan, score the missing parts, check, candidates."""
    plan = make_plan(scorer, reader, models=models, meta=meta, split=split, part_rows=part_rows)
    with survey_catalog(out, plan):
        # score_parts skips the parts already committed intact (one check per part)
        score_parts(
            scorer, reader, out, plan, range(plan.parts), meta=meta, read_rows=read_rows, progress=progress
        )
        return finish_survey(out, plan, reader, rank_by=rank_by, top_k=top_k)


@contextlib.contextmanager
def survey_catalog(out: str | Path, plan: CatalogPlan) -> Iterator[Path]:
    """``out`` held (locked) for the block and opened for ``plan``: its parts are scored
    (in this process, or by several workers that do not lock again), then finished."""
    with run_lock(out, "survey scoring"):
        yield open_catalog(out, plan)


def finish_survey(
    out: str | Path, plan: CatalogPlan, reader: ShardReader, *, rank_by: str | None = None, top_k: int = 1000
) -> dict[str, Any]:
    """Once every part is committed: the check, the top-k candidates and their gallery."""
    summary = finish_catalog(out, plan)
    column = rank_by or rank_column(plan)
    table, gallery = write_candidates(out, plan, reader, column, top_k)
    return {
        **summary,
        "rank_by": column,
        "candidates": str(table),
        "gallery": str(gallery) if gallery else None,
    }


def finish_catalog(out: str | Path, plan: CatalogPlan) -> dict[str, Any]:
    """Check every part is there and no row repeats; mark the catalogue complete."""
    out = Path(out)
    store, expected = catalog_parts(out, plan), expected_rows(plan) or {}
    n, previous, missing = 0, -1, []
    for k in range(plan.parts):  # streamed, each part verified once as it is read
        try:
            rows = store.read(k, expected.get(k), columns=["row"])["row"].to_numpy()
        except LenscalError:
            missing.append(k)
            continue
        if rows.size and (rows[0] <= previous or (np.diff(rows) <= 0).any()):
            raise LenscalError(f"{part_path(out, k)}: rows out of order or repeated (a stale part?)")
        if rows.size and not (k * plan.part_rows <= rows[0] and rows[-1] < (k + 1) * plan.part_rows):
            raise LenscalError(f"{part_path(out, k)}: holds rows of another part (a stale part?)")
        previous = int(rows[-1]) if rows.size else previous
        n += rows.size
    if missing:
        raise LenscalError(f"{out}: {len(missing)} part(s) not scored yet, e.g. {missing[:5]}")
    if plan.split is None and n != plan.n_rows:
        raise LenscalError(f"{out}: parts hold {n} rows for {plan.n_rows}; rerun with a fresh --out")
    identity = plan.identity()
    summary = {
        **identity,
        **plan.extra,
        "definition_sha256": canonical_sha256(identity),
        "complete": True,
        "rows": n,
    }
    write_json(out / "catalog.json", summary)
    return summary


def top_candidates(out: str | Path, plan: CatalogPlan, column: str, k: int) -> pd.DataFrame:
    """The ``k`` rows with the highest ``column``, over every part (ties: lower row first)."""
    best = pd.DataFrame()
    store = catalog_parts(out, plan)
    for part in range(plan.parts):
        frame = store.read(part)
        if column not in frame.columns:
            raise LenscalError(f"no column {column!r} in the catalogue; it has {list(frame.columns)}")
        best = pd.concat([best, frame.nlargest(k, column, keep="first")], ignore_index=True)
        best = best.sort_values([column, "row"], ascending=[False, True], kind="stable").head(k)
    return best.reset_index(drop=True)


def write_candidates(
    out: str | Path, plan: CatalogPlan, reader: ShardReader, column: str, k: int, gallery: int = 48
) -> tuple[Path, Path | None]:
    """``candidates.parquet`` (top ``k`` by ``column``) and ``candidates.png`` (the first
    ``gallery`` of them as g, r, z colour images, with their probability)."""
    from lenscal.mock.catalog import is_mock
    from lenscal.plotting import pyplot, rgb, save_figure

    out = Path(out)
    best = top_candidates(out, plan, column, k)
    path = out / "candidates.parquet"
    with atomic_path(path) as tmp:
        best.to_parquet(tmp, index=False)
    shown = best.head(gallery)
    if shown.empty:
        return path, None
    # Row by row with file reads: touching scattered rows through the memory maps maps far
    # more of the shard files than the rows themselves (measured: +64 MB for 48 rows).
    images = np.stack([reader.read_range(r, r + 1)[0] for r in shown["row"].tolist()]).astype(np.float32)
    plt = pyplot()
    cols = min(8, len(shown))
    nrows = -(-len(shown) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(1.7 * cols, 1.9 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (ax, (_, row)) in enumerate(zip(axes.ravel(), shown.iterrows(), strict=False)):
        ax.imshow(rgb(images[i]), origin="lower")
        ax.set_title(f"{row['galaxy_id']}\n{column} {row[column]:.3f}", fontsize=8)
    fig.suptitle(f"top {len(shown)} of {plan.n_rows} by {column} (g, r, z as B, G, R; asinh)")
    fig.tight_layout()
    return path, save_figure(fig, out / "candidates.png", mock=is_mock(shown["galaxy_id"]))
