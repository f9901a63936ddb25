"""Flow ``score-survey``: every cutout of a shard directory scored on the scorer replicas by
one or more models (and a meta-learner), into the partitioned catalogue of
``lenscal.scoring.survey``: parts fanned out over a task runner (threads, or a Dask
cluster), each committed as it is scored, so a rerun scores only what is missing; then the
check, the top-k candidates and their gallery."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lenscal.data.shards import ShardReader
from lenscal.scoring.meta import MetaLearner, load_meta
from lenscal.scoring.survey import (
    PART_ROWS,
    CatalogPlan,
    finish_catalog,
    make_plan,
    open_catalog,
    pending_parts,
    rank_column,
    score_parts,
    write_candidates,
)
from lenscal.workspace import run_lock
from lenscal_flows.common import TASK_RETRIES, TASK_RETRY_DELAYS, publish, transient
from lenscal_flows.fanout import groups, task_runner
from lenscal_flows.services import Endpoints, clients, service_endpoints
from lenscal_flows.settings import load_settings


@task(
    name="survey-parts",
    cache_policy=NO_CACHE,
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=transient,
)
def score_group(
    shards: str, out: str, endpoints: Endpoints, plan: CatalogPlan, meta: MetaLearner | None, parts: list[int]
) -> int:
    reader = ShardReader(shards)
    with clients(endpoints) as (scorer, _):
        return score_parts(scorer, reader, out, plan, parts, meta=meta)


@flow(name="survey-fan-out")
def fan_out(
    shards: str,
    out: str,
    endpoints: Endpoints,
    plan: CatalogPlan,
    meta: MetaLearner | None,
    part_groups: list[list[int]],
) -> int:
    futures = [score_group.submit(shards, out, endpoints, plan, meta, g) for g in part_groups]
    return sum(f.result() for f in futures)


@flow(name="score-survey", log_prints=True, persist_result=True)
def score_survey_flow(
    shards: str | None = None,
    models: list[str] | None = None,
    meta: str | None = None,
    out: str | None = None,
    split: str | None = None,
    preset: str = "full",
    workers: int = 2,
    dask_address: str | None = None,
    part_rows: int = PART_ROWS,
    top_k: int = 1000,
) -> str:
    """Score a shard directory (default: the configured hosts) with ``models`` (bundles or
    run IDs; with configured scorers, served model names; default the configured model) and
    an optional meta-learner, at a preset (demo: small parts). Returns the catalogue."""
    logger = get_run_logger()
    settings = load_settings()
    source = settings.need("hosts", shards)
    if preset == "demo":
        part_rows = min(part_rows, 128)
    learner = load_meta(meta) if meta else None
    reader = ShardReader(source)
    with service_endpoints(settings, models) as endpoints, clients(endpoints) as (scorer, _):
        served = list(models or []) if settings.scorer_endpoints else []
        plan = make_plan(scorer, reader, models=served, meta=learner, split=split, part_rows=part_rows)
        names = "+".join(m["model_id"] for m in plan.models)
        target = Path(out) if out else Path(settings.results) / "survey" / f"{Path(source).name}_{names}"
        # The flow holds the catalogue for the run; its part tasks write under that claim.
        with run_lock(target, "survey flow"):
            open_catalog(target, plan)
            todo = pending_parts(target, plan)
            logger.info(
                "%d cutouts in %d parts, %d to score -> %s", plan.n_rows, plan.parts, len(todo), target
            )
            if todo:
                fan_out.with_options(task_runner=task_runner(workers, dask_address))(
                    source, str(target), endpoints, plan, learner, groups(todo, workers)
                )
            summary = finish_catalog(target, plan)
            column = rank_column(plan)
            candidates, gallery = write_candidates(target, plan, reader, column, top_k)
    publish(
        target,
        "survey catalogue",
        [f"{summary['rows']} cutouts scored by {names}; top {top_k} by {column} in {candidates.name}"],
        [gallery] if gallery else [],
        key="score-survey",
    )
    return str(target)
