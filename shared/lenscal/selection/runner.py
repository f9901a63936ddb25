"""Running a grid: inject, score, count, write. The runner talks only to the Scorer and
Injector interfaces (in-process or over gRPC, the same code).

Work streams in chunks (memory does not grow with the grid) through a two-stage pipeline:
a producer thread reads hosts and has the injector render chunk k + 1 while the scorer
scores chunk k. Each scored chunk is committed as ``parts/part-NNNNN.parquet`` (atomically);
a run killed part-way and started again with the same definition reuses committed parts
and scores every injection exactly once.

Results directory: ``meta.json`` (the full definition and its hash, checkpoint, hosts,
preprocessing, versions, timings), ``injections.parquet`` (one row per injection: cell,
host, every parameter, truth, score), ``negatives.parquet`` (scores of the validation
negatives that set the FPR thresholds), ``cells.csv`` and ``marginal_*.csv`` (k, n,
completeness, Jeffreys 68/95% per threshold), ``metrics.json`` (pooled marginals, for the
registry) and PNGs (lenscal.selection.plots).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal import __version__
from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_path
from lenscal.injection.api import Injector, InjectResult, RenderOptions
from lenscal.injection.hosts import host_moments, host_pool, host_psf_fwhm
from lenscal.injection.priors import sample_params
from lenscal.mock.catalog import is_mock
from lenscal.physics import ArcParams
from lenscal.progress import progress_bar
from lenscal.scoring.api import Scorer
from lenscal.scoring.rows import score_rows
from lenscal.selection.config import GridConfig, GridError
from lenscal.selection.plan import GridPlan, Injection, capped_pool, plan_grid
from lenscal.selection.tables import (
    bin_labels,
    counts,
    detection_thresholds,
    is_forced,
    mark_forced,
    pooled,
)
from lenscal.workspace import (
    PARTS,
    Parts,
    canonical_sha256,
    claim,
    clear_directory,
    results_directory,
    run_lock,
    write_json,
)

#: Injections per chunk: one injector call and one scorer call each.
CHUNK = 256


@dataclass
class GridResult:
    out: Path
    metrics: dict[str, Any]
    meta: dict[str, Any]


@dataclass
class GridRun:
    """A prepared grid run: its plan and its claimed results directory. Chunks are then
    scored (all at once, or in disjoint sets by several workers) and the run finished."""

    config: GridConfig
    hosts: ShardReader
    out: Path
    plan: GridPlan
    meta: dict[str, Any]
    model: str  # the scorer's name for the model
    chunk_size: int

    @property
    def chunks(self) -> list[list[Injection]]:
        return self.plan.chunks(self.chunk_size)

    @property
    def parts(self) -> Parts:
        return Parts(self.out, self.meta["definition_sha256"])

    def pending(self, chunk_ids: Sequence[int] | None = None) -> list[int]:
        """Chunks (of ``chunk_ids``, default all) without an intact committed part: a
        truncated, rewritten or foreign part is scored again."""
        chunks = self.chunks
        wanted = range(len(chunks)) if chunk_ids is None else chunk_ids
        return self.parts.pending(wanted, {k: len(chunks[k]) for k in wanted})


def run_grid(
    config: GridConfig,
    *,
    hosts: ShardReader,
    scorer: Scorer,
    injector: Injector,
    out: str | Path,
    model: str = "",
    chunk_size: int = CHUNK,
    force_fpr: bool = False,
    restart: bool = False,
    progress: bool | None = None,
) -> GridResult:
    with run_lock(out, "grid run"):
        run = prepare_grid(
            config, hosts=hosts, scorer=scorer, out=out, model=model, chunk_size=chunk_size, restart=restart
        )
        timings = score_chunks(run, scorer, injector, progress=progress)
        return finish_grid(run, scorer, force_fpr=force_fpr, progress=progress, timings=timings)


def prepare_grid(
    config: GridConfig,
    *,
    hosts: ShardReader,
    scorer: Scorer,
    out: str | Path,
    model: str = "",
    chunk_size: int = CHUNK,
    restart: bool = False,
) -> GridRun:
    """Plan the run and claim ``out`` for its definition (refusing another definition);
    idempotent, so each of several workers may call it. The caller that coordinates the run
    holds ``lenscal.workspace.run_lock`` on ``out`` (workers of the run do not)."""
    out = results_directory(out)
    if restart:
        clear_directory(out)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    manifest = hosts.manifest()
    plan = plan_grid(manifest, config)
    info = scorer.model_info(model)[0]
    spec = info.spec if config.preprocess_override is None else config.preprocess_override.apply(info.spec)
    definition = {
        **config.definition(),
        "hosts": {"shards_sha256": hosts.index.source_sha256, "pool_sha256": plan.pool_sha256},
        "checkpoint": {"model_id": info.model_id, "bundle_sha256": info.bundle_sha256},
        "preprocess": json.loads(spec.to_json()),
        "chunk_size": chunk_size,
    }
    digest = canonical_sha256(definition)
    claim(out, "meta.json", digest, what="grid run", error=GridError)
    geometry = {**config.geometry(), "hosts_source": hosts.index.source_sha256}
    meta: dict[str, Any] = {
        "format": "lenscal-grid/1",
        "name": config.name,
        "description": config.description,
        "preset": config.preset,
        "mock_hosts": is_mock(manifest["galaxy_id"]),
        "definition": definition,
        "definition_sha256": digest,
        "geometry": geometry,
        "geometry_sha256": canonical_sha256(geometry),
        "checkpoint": {
            "model": info.name,
            "model_id": info.model_id,
            "architecture": info.architecture,
            "bundle_sha256": info.bundle_sha256,
            "weights_sha256": info.weights_sha256,
        },
        "hosts": {
            "shards": str(hosts.directory),
            "pool": config.injection_model,
            "pool_size": plan.pool_size,
            "cells_with_hosts": sum(1 for v in plan.hosts_per_cell.values() if v),
            "cells": len(plan.hosts_per_cell),
        },
        "injections": len(plan.injections),
        "lenscal_version": __version__,
        "status": "running",
    }
    if not (out / "meta.json").is_file():  # claimed once; workers preparing again leave it be
        write_json(out / "meta.json", meta)
    return GridRun(config, hosts, out, plan, meta, info.name, chunk_size)


def score_chunks(
    run: GridRun,
    scorer: Scorer,
    injector: Injector,
    chunk_ids: Sequence[int] | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Inject and score the run's uncommitted chunks (of ``chunk_ids``, default all),
    committing each as it is scored; returns stage timings."""
    return _score_injections(run, scorer, injector, run.pending(chunk_ids), progress)


def finish_grid(
    run: GridRun,
    scorer: Scorer,
    *,
    force_fpr: bool = False,
    progress: bool | None = None,
    timings: dict[str, float] | None = None,
) -> GridResult:
    """Once every chunk is committed: the per-injection table, the negatives' scores, the
    thresholds, the tables and the plots."""
    config, out = run.config, run.out
    injections = _assemble(run)
    negatives = _score_negatives(config, run.hosts, scorer, run.model, out, progress)
    thresholds, fpr_info = _thresholds(config, negatives, force_fpr)
    metrics = _tables(config, run.plan, injections, thresholds, fpr_info, out)
    meta = dict(run.meta)
    meta.update(status="complete", timings=timings or {}, thresholds=fpr_info)
    write_json(out / "meta.json", meta)
    from lenscal.selection.plots import grid_plots

    grid_plots(out)
    return GridResult(out, metrics, meta)


# --- injecting and scoring -------------------------------------------------------------


def _score_injections(
    run: GridRun, scorer: Scorer, injector: Injector, todo: list[int], progress: bool | None
) -> dict[str, float]:
    chunks, config = run.chunks, run.config
    done = sum(len(c) for c in chunks) - sum(len(chunks[k]) for k in todo)
    timings = {"read_s": 0.0, "inject_s": 0.0, "score_s": 0.0, "wall_s": 0.0, "injections_scored": 0}
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)  # injected chunks waiting for the scorer
    stop = threading.Event()

    def produce() -> None:
        try:
            for k in todo:
                if stop.is_set():
                    return
                result = inject_chunk(config, chunks[k], run.hosts, injector, timings)
                ready.put((k, result))
            ready.put(None)
        except BaseException as exc:  # handed to the scoring side, which raises it
            ready.put(exc)

    started = time.perf_counter()
    producer = threading.Thread(target=produce, name="lenscal-grid-injector", daemon=True)
    producer.start()
    try:
        with progress_bar(len(run.plan.injections), f"grid {config.name}", enabled=progress) as advance:
            advance(done)
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                k, result = item
                t0 = time.perf_counter()
                scored = scorer.score(result.images, model=run.model, override=config.preprocess_override)
                timings["score_s"] += time.perf_counter() - t0
                _commit_part(run.parts, k, chunks[k], result.truth, scored.logits, scored.probabilities)
                timings["injections_scored"] += len(chunks[k])
                advance(len(chunks[k]))
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                producer.join(0.05)
    timings["wall_s"] = time.perf_counter() - started
    return timings


def inject_chunk(
    config: GridConfig,
    chunk: list[Injection],
    hosts: ShardReader,
    injector: Injector,
    timings: dict[str, float] | None = None,
    return_arcs: bool = False,
) -> InjectResult:
    """Read the hosts of planned injections and inject their arcs: the one place a grid's
    injection is made, by the runner and by ``lenscal grid replay`` alike. Noise is keyed by
    (run seed, injection number), parameters by (run seed, cell, index), so an injection made
    alone equals the same injection made in its chunk."""
    t0 = time.perf_counter()
    rows = np.array([inj.host_row for inj in chunk])
    images = hosts.read(rows)
    picked = hosts.manifest().iloc[rows]
    params = _params(config, config.prior_model(), chunk, host_psf_fwhm(picked) * config.psf_scale, images)
    t1 = time.perf_counter()
    result = injector.inject(
        images,
        params=params,
        ids=picked["galaxy_id"].astype(str).tolist(),
        indices=[inj.number for inj in chunk],
        options=RenderOptions(poisson_gain=config.poisson_gain, noise_seed=config.seed, noise_cell="grid"),
        return_arcs=return_arcs,
    )
    if timings is not None:
        timings["read_s"] += t1 - t0
        timings["inject_s"] += time.perf_counter() - t1
    return result


def _params(
    config: GridConfig, prior: Any, chunk: list[Injection], psf: np.ndarray, images: np.ndarray
) -> ArcParams:
    """Parameters of each injection, drawn by (seed, cell, index): IM2 conditions the lens on
    the host's measured light."""
    shape = host_moments(images) if config.injection_model == "IM2" else None
    parts = []
    start = 0
    while start < len(chunk):
        stop = start
        while stop < len(chunk) and chunk[stop].cell == chunk[start].cell:
            stop += 1
        group = chunk[start:stop]
        parts.append(
            sample_params(
                prior,
                [inj.theta_e for inj in group],
                psf[start:stop],
                seed=config.seed,
                cell=group[0].cell,
                indices=[inj.index for inj in group],
                host_q=None if shape is None else shape[0][start:stop],
                host_phi=None if shape is None else shape[1][start:stop],
            )
        )
        start = stop
    return ArcParams.concat(parts)


def _commit_part(
    parts: Parts,
    k: int,
    chunk: list[Injection],
    truth: pd.DataFrame,
    logits: np.ndarray,
    probabilities: np.ndarray,
) -> None:
    frame = pd.DataFrame(
        {
            "number": [i.number for i in chunk],
            "cell": [i.cell for i in chunk],
            "theta_e_bin": [i.theta_e for i in chunk],
            "psf_bin": [i.psf_bin for i in chunk],
            "depth_bin": [i.depth_bin for i in chunk],
            "index": [i.index for i in chunk],
            "host_row": [i.host_row for i in chunk],
        }
    )
    frame = pd.concat([frame, truth.reset_index(drop=True)], axis=1)
    frame["logit"] = np.asarray(logits, dtype=np.float32)
    frame["probability"] = np.asarray(probabilities, dtype=np.float64)
    parts.commit(k, frame)


def _assemble(run: GridRun) -> pd.DataFrame:
    """Every chunk's part, each verified once as it is read (no separate checking pass)."""
    out = run.out
    frames, missing = [], []
    for k, chunk in enumerate(run.chunks):
        try:
            frames.append(run.parts.read(k, rows=len(chunk)))
        except LenscalError:
            missing.append(k)
    if missing:
        raise GridError(
            f"{run.out}: {len(missing)} chunk(s) not scored yet (e.g. {missing[:5]}); score them first"
        )
    injections = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(injections) and injections["number"].duplicated().any():
        raise GridError(f"{out}: an injection was scored twice (corrupted parts); rerun with --restart")
    with atomic_path(out / "injections.parquet") as tmp:
        injections.to_parquet(tmp, index=False)
    return injections


# --- thresholds ------------------------------------------------------------------------


def _score_negatives(
    config: GridConfig, hosts: ShardReader, scorer: Scorer, model: str, out: Path, progress: bool | None
) -> pd.DataFrame:
    """Scores of the validation negatives (the FPR thresholds rest on them), once per run."""
    path = out / "negatives.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    pool = host_pool(hosts.manifest().reset_index(drop=True), "IM1", config.split)
    pool = capped_pool(pool, config.fpr_negatives_max, config.seed).sort_index()
    rows = pool.index.to_numpy()
    probabilities = (
        score_rows(
            scorer,
            hosts,
            rows,
            model=model,
            override=config.preprocess_override,
            label="negatives",
            progress=progress,
        ).probabilities
        if rows.size
        else np.empty(0)
    )
    frame = pd.DataFrame(
        {"galaxy_id": pool["galaxy_id"].astype(str).to_numpy(), "probability": probabilities}
    )
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame


def _thresholds(
    config: GridConfig, negatives: pd.DataFrame, force: bool
) -> tuple[dict[str, float], dict[str, Any]]:
    return detection_thresholds(
        negatives["probability"].to_numpy(),
        fixed=config.thresholds,
        fpr_targets=config.fpr_targets,
        min_false_positives=config.min_false_positives,
        force=force,
    )


# --- tables ----------------------------------------------------------------------------


def _tables(
    config: GridConfig,
    plan: GridPlan,
    injections: pd.DataFrame,
    thresholds: dict[str, float],
    fpr_info: dict[str, Any],
    out: Path,
) -> dict[str, Any]:
    cells_all = pd.DataFrame([{"theta_e_bin": t, "psf_bin": p, "depth_bin": d} for t, p, d in config.cells()])
    data = injections.copy()
    data["source_mag_bin"] = bin_labels(data["mag_r"].to_numpy(float), config.source_mag_bins)
    data["lensed_mag_bin"] = bin_labels(data["lensed_mag_r"].to_numpy(float), config.lensed_mag_bins)
    cells = mark_forced(
        counts(data, ["theta_e_bin", "psf_bin", "depth_bin"], thresholds, full=cells_all), fpr_info
    )
    cells.to_csv(out / "cells.csv", index=False)
    tables = {
        "theta_e": pooled(cells, ["theta_e_bin"]),
        "psf": pooled(cells, ["psf_bin"]),
        "depth": pooled(cells, ["depth_bin"]),
        "source_mag": counts(data[data["source_mag_bin"] != ""], ["source_mag_bin"], thresholds),
        "lensed_mag": counts(data[data["lensed_mag_bin"] != ""], ["lensed_mag_bin"], thresholds),
        "overall": pooled(cells, []),
    }
    for name, table in tables.items():
        mark_forced(table, fpr_info).to_csv(out / f"marginal_{name}.csv", index=False)
    overall = tables["overall"].set_index("threshold")
    metrics: dict[str, Any] = {
        "injections": len(injections),
        "cells": len(cells_all),
        "cells_with_data": int(sum(1 for v in plan.hosts_per_cell.values() if v)),
        "hosts": plan.pool_size,
        "completeness": {
            label: {
                "k": int(row.k),
                "n": int(row.n),
                "value": None if row.no_data else float(row.completeness),
                "jeffreys68": [row.jeffreys68_low, row.jeffreys68_high],
                "jeffreys95": [row.jeffreys95_low, row.jeffreys95_high],
                "forced": is_forced(str(label), fpr_info),
            }
            for label, row in overall.iterrows()
        },
        "forced_thresholds": sorted(label for label in thresholds if is_forced(label, fpr_info)),
        "thresholds": {label: value for label, value in thresholds.items()},
        "fpr_thresholds": fpr_info,
        "interval_method": "jeffreys (Beta(k+1/2, n-k+1/2), equal-tailed); marginals pool counts",
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def record_details(
    config: GridConfig, scorer: Scorer, model: str, registry: Any, run_id: str | None, hosts: ShardReader
) -> dict[str, Any]:
    """recorded_run's keyword arguments for a grid run: an evaluation (E<NN>-...) or a
    diagnostic (D<NN>), lineage (the checkpoint, the injection model, created if missing),
    the grid's definition and hash as config."""
    from lenscal.registry.identity import RunIdentity
    from lenscal.registry.ids import RegistryError, kind_of
    from lenscal.registry.runs import ensure_injection_model

    run_id = run_id or config.run_id
    kind = kind_of(run_id) if run_id else None
    if run_id is None or kind not in ("evaluation", "diagnostic"):
        raise RegistryError(
            f"a grid run is an evaluation (E<NN>-<suffix>) or a diagnostic (D<NN>), not {run_id!r}"
        )
    ensure_injection_model(registry, config.injection_model)
    info = scorer.model_info(model)[0]
    identity = RunIdentity(
        checkpoint=info.model_id,
        hosts=hosts.index.source_sha256,
        bundle_sha256=info.bundle_sha256,
        injection_model=config.injection_model,
    )
    return {
        "run_id": run_id,
        "kind": kind,
        "config": {"grid": config.model_dump(mode="json"), "definition": config.definition()},
        "parents": identity.parents(),
        "identity": identity,
        "description": config.description or f"selection-function grid {config.name}",
    }
