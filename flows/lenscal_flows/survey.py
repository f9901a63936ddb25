"""Flow ``score-survey``: every cutout of a shard directory scored on the scorer replicas,
in parts fanned out over a task runner (threads, or a Dask cluster); each part committed as
it is scored, so a rerun scores only what is missing; then ``scores.parquet``."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lenscal.data.shards import ShardReader
from lenscal.scoring.survey import PART_ROWS, assemble, pending_parts, score_parts, survey_rows
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
    shards: str, out: str, endpoints: Endpoints, split: str | None, parts: list[int], part_rows: int
) -> int:
    reader = ShardReader(shards)
    with clients(endpoints) as (scorer, _):
        return score_parts(
            scorer, reader, out, survey_rows(reader, split), parts, model=endpoints.model, part_rows=part_rows
        )


@flow(name="survey-fan-out")
def fan_out(
    shards: str,
    out: str,
    endpoints: Endpoints,
    split: str | None,
    part_groups: list[list[int]],
    part_rows: int,
) -> int:
    futures = [score_group.submit(shards, out, endpoints, split, g, part_rows) for g in part_groups]
    return sum(f.result() for f in futures)


@flow(name="score-survey", log_prints=True, persist_result=True)
def score_survey_flow(
    shards: str | None = None,
    model: str | None = None,
    out: str | None = None,
    split: str | None = None,
    preset: str = "full",
    workers: int = 2,
    dask_address: str | None = None,
    part_rows: int = PART_ROWS,
) -> str:
    """Score a shard directory (default: the configured hosts) at a preset (demo: small parts)."""
    logger = get_run_logger()
    settings = load_settings()
    source = settings.need("hosts", shards)
    if preset == "demo":
        part_rows = min(part_rows, 128)
    reader = ShardReader(source)
    rows = survey_rows(reader, split)
    with service_endpoints(settings, model) as endpoints, clients(endpoints) as (scorer, _):
        info = scorer.model_info(endpoints.model)[0]
        target = (
            Path(out) if out else Path(settings.results) / "survey" / f"{Path(source).name}_{info.model_id}"
        )
        todo = pending_parts(target, rows.size, part_rows)
        logger.info(
            "%d cutouts in %d parts, %d to score -> %s",
            rows.size,
            -(-rows.size // part_rows),
            len(todo),
            target,
        )
        if todo:
            fan_out.with_options(task_runner=task_runner(workers, dask_address))(
                source, str(target), endpoints, split, groups(todo, workers), part_rows
            )
    meta = {
        "shards": source,
        "split": split,
        "model_id": info.model_id,
        "bundle_sha256": info.bundle_sha256,
        "rows": int(rows.size),
    }
    path = assemble(target, rows.size, part_rows, meta=meta)
    publish(
        target, "survey scores", [f"{rows.size} cutouts scored with {info.model_id}"], [], key="score-survey"
    )
    return str(path)
