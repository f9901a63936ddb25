"""The grid job: `lenscal grid run` and the ``selection-grid`` flow."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lenscal.backends import Services
from lenscal.data.shards import ShardReader
from lenscal.home import FULL
from lenscal.registry.ids import check_id, kind_of
from lenscal.registry.runs import recorded_run
from lenscal.registry.store import Registry
from lenscal.scoring.api import Scorer
from lenscal.selection.config import GridConfig, GridError, load_grid
from lenscal.selection.runner import (
    CHUNK,
    GridResult,
    GridRun,
    finish_grid,
    prepare_grid,
    record_details,
    score_chunks,
)
from lenscal.validation import validated
from lenscal.workspace import run_lock


class GridJob(BaseModel):
    """A grid run: the grid (a name in configs/grids or a file) at a preset, on hosts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: str
    hosts: Path
    out: Path | None = None  # default: <results>/grids/<grid name>_<preset>
    results: Path = Path("results")
    preset: str = FULL
    per_cell: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    run_id: str | None = None  # E<NN>-<suffix> or D<NN>; default the grid's run_id; none: not recorded
    chunk_size: int = Field(CHUNK, ge=1)
    force_fpr: bool = False
    restart: bool = False

    def config(self) -> GridConfig:
        """The grid at the preset, every input checked (also the run ID) before any work;
        loaded once per job (the command, the job and the flow all ask for it)."""
        return self.loaded

    @cached_property
    def loaded(self) -> GridConfig:
        config = load_grid(self.grid, self.preset, per_cell=self.per_cell, seed=self.seed)
        chosen = self.recorded_as(config)
        if chosen is not None:
            check_id(kind_of(chosen) or "evaluation", chosen)
        return config

    def recorded_as(self, config: GridConfig) -> str | None:
        return self.run_id or config.run_id

    def target(self, config: GridConfig) -> Path:
        return self.out or self.results / "grids" / f"{config.name}_{self.preset}"


def grid_job(**values: Any) -> GridJob:
    return validated(GridJob, values, error=GridError, source="grid job")


@contextlib.contextmanager
def grid_run(
    job: GridJob, scorer: Scorer, *, model: str = "", registry: Registry | None = None
) -> Iterator[GridRun]:
    """The run prepared in its results directory, held (locked) and recorded for the block;
    the caller scores its pending chunks (in this process, or fanned out) and finishes it."""
    config = job.config()
    target = job.target(config)
    reader = ShardReader(job.hosts)
    with run_lock(target, f"grid run ({config.name})"):
        run = prepare_grid(
            config,
            hosts=reader,
            scorer=scorer,
            out=target,
            model=model,
            chunk_size=job.chunk_size,
            restart=job.restart,
        )
        recording: Any = contextlib.nullcontext()
        if job.recorded_as(config) and registry is not None:
            details = record_details(config, scorer, model, registry, job.run_id, reader)
            recording = recorded_run(registry, details.pop("run_id"), results_dir=target, **details)
        with recording:
            yield run


def run_grid_job(job: GridJob, services: Services, *, progress: bool | None = None) -> GridResult:
    """The whole run in this process: inject, score, count, plot; resumable; recorded under
    its run ID."""
    config = job.config()
    registry = Registry(services.registry) if job.recorded_as(config) else None
    with services.open_scorer() as scorer, services.open_injector() as injector:
        scorer.wait_ready()
        injector.wait_ready()
        with grid_run(job, scorer, model=services.model, registry=registry) as run:
            timings = score_chunks(run, scorer, injector, progress=progress)
            return finish_grid(run, scorer, force_fpr=job.force_fpr, progress=progress, timings=timings)
