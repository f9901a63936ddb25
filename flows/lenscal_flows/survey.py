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
from lenscal.jobs.survey import survey_job, survey_run
from lenscal.scoring.meta import MetaLearner
from lenscal.scoring.survey import CatalogPlan, finish_survey, pending_parts, score_parts
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
    settings: str = "dr10",
    workers: int = 2,
    dask_address: str | None = None,
    part_rows: int | None = None,
    top_k: int | None = None,
) -> str:
    """The job of `lenscal score-survey` with its parts fanned out: a shard directory (default:
    the configured hosts) scored by ``models`` (bundles or run IDs; with configured scorers,
    served model names; default the configured model) and an optional meta-learner, at a
    preset of the survey settings (demo: small parts). Returns the catalogue."""
    logger = get_run_logger()
    flow_settings = load_settings()
    job = survey_job(
        shards=flow_settings.need("hosts", shards),
        out=out,
        results=flow_settings.results,
        settings=settings,
        preset=preset,
        split=split,
        meta=meta,
        part_rows=part_rows,
        top_k=top_k,
    )
    job.resolved()  # bad settings fail here, before any service starts
    with service_endpoints(flow_settings, models) as endpoints, clients(endpoints) as (scorer, _):
        served = list(models or []) if flow_settings.scorer_endpoints else []
        # The job holds the catalogue for the run; its part tasks write under that claim.
        with survey_run(job, scorer, served) as run:
            plan, target = run.plan, run.out
            todo = pending_parts(target, plan)
            logger.info(
                "%d cutouts in %d parts, %d to score -> %s", plan.n_rows, plan.parts, len(todo), target
            )
            if todo:
                fan_out.with_options(task_runner=task_runner(workers, dask_address))(
                    str(job.shards), str(target), endpoints, plan, run.learner, groups(todo, workers)
                )
            summary = finish_survey(target, plan, run.reader, top_k=run.settings.top_k)
    names = "+".join(m["model_id"] for m in plan.models)
    publish(
        target,
        "survey catalogue",
        [
            f"{summary['rows']} cutouts scored by {names}; top {run.settings.top_k} by {summary['rank_by']} "
            f"in {Path(summary['candidates']).name}"
        ],
        [Path(summary["gallery"])] if summary["gallery"] else [],
        key="score-survey",
    )
    return str(target)
