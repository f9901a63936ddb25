"""Flow ``selection-grid``: a grid (configs/grids) through the services, its chunks fanned
out over a task runner (threads, or a Dask cluster), each chunk committed as it is scored;
a run killed and started again resumes from the committed chunks (no injection lost or
scored twice). Recorded in the registry when given an evaluation or diagnostic run ID."""

from __future__ import annotations

import contextlib

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lenscal.data.shards import ShardReader
from lenscal.jobs.grid import grid_job, grid_run
from lenscal.registry.store import Registry
from lenscal.selection.config import GridConfig
from lenscal.selection.runner import CHUNK, finish_grid, prepare_grid, score_chunks
from lenscal_flows.common import TASK_RETRIES, TASK_RETRY_DELAYS, publish, transient
from lenscal_flows.fanout import groups, task_runner
from lenscal_flows.services import Endpoints, clients, service_endpoints
from lenscal_flows.settings import load_settings


@task(
    name="grid-chunks",
    cache_policy=NO_CACHE,
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=transient,
)
def score_group(
    config: GridConfig, shards: str, out: str, endpoints: Endpoints, chunk_ids: list[int], chunk_size: int
) -> int:
    """Inject and score these chunks (those already committed are skipped)."""
    with clients(endpoints) as (scorer, injector):
        run = prepare_grid(
            config,
            hosts=ShardReader(shards),
            scorer=scorer,
            out=out,
            model=endpoints.model,
            chunk_size=chunk_size,
        )
        timings = score_chunks(run, scorer, injector, chunk_ids=chunk_ids, progress=False)
    return int(timings["injections_scored"])


@flow(name="grid-fan-out")
def fan_out(
    config: GridConfig,
    shards: str,
    out: str,
    endpoints: Endpoints,
    chunk_groups: list[list[int]],
    chunk_size: int,
) -> int:
    futures = [score_group.submit(config, shards, out, endpoints, g, chunk_size) for g in chunk_groups]
    return sum(f.result() for f in futures)


@flow(name="selection-grid", log_prints=True, persist_result=True)
def selection_grid_flow(
    grid: str,
    preset: str = "full",
    per_cell: int | None = None,
    seed: int | None = None,
    hosts: str | None = None,
    model: str | None = None,
    out: str | None = None,
    run_id: str | None = None,
    workers: int = 2,
    dask_address: str | None = None,
    chunk_size: int = CHUNK,
    force_fpr: bool = False,
    restart: bool = False,
) -> str:
    """A selection-function grid at a preset (full: the grid as written; demo and others: its
    YAML's presets), the job of `lenscal grid run` with its chunks fanned out."""
    logger = get_run_logger()
    settings = load_settings()
    job = grid_job(
        grid=grid,
        hosts=settings.need("hosts", hosts),
        out=out,
        results=settings.results,
        preset=preset,
        per_cell=per_cell,
        seed=seed,
        run_id=run_id,
        chunk_size=chunk_size,
        force_fpr=force_fpr,
        restart=restart,
    )
    config = job.config()  # a bad grid, preset or run ID fails here, before any service starts
    registry = Registry() if job.recorded_as(config) else None
    # The job holds the directory for the run; its chunk tasks (threads or Dask workers)
    # write parts under that claim without locking again.
    with contextlib.ExitStack() as stack:
        endpoints = stack.enter_context(service_endpoints(settings, model))
        scorer, _ = stack.enter_context(clients(endpoints))
        with grid_run(job, scorer, model=endpoints.model, registry=registry) as run:
            pending = run.pending()
            logger.info(
                "grid %s: %d injections in %d chunks, %d to score -> %s",
                config.name,
                len(run.plan.injections),
                len(run.chunks),
                len(pending),
                run.out,
            )
            if pending:
                fan_out.with_options(task_runner=task_runner(workers, dask_address))(
                    config, str(job.hosts), str(run.out), endpoints, groups(pending, workers), chunk_size
                )
            result = finish_grid(run, scorer, force_fpr=force_fpr)
    target = run.out
    headline = [
        f"{label}: {v['k']}/{v['n']}" + ("" if v["value"] is None else f" = {v['value']:.2%}")
        for label, v in result.metrics["completeness"].items()
    ]
    figures = [target / "completeness_heatmaps.png", target / "completeness_vs_theta_e.png"]
    publish(target, f"grid {config.name} ({preset})", headline, figures, key=f"grid-{config.name}")
    logger.info("%s", "; ".join(headline))
    return str(target)
