"""Flows ``diagnostic`` (D01-D07 and any D definition) and ``evaluate`` (E04-eval,
E04-IM1, E04-IM2): a definition's steps, one Prefect task each, through the Scorer and
Injector of the configured (or locally started) services; the run recorded in the
registry, a results directory by the team's naming convention (a rerun of the same run
reuses it: finished steps are kept, a grid resumes inside), artifacts with the decisive
numbers and a progress bar."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lenscal.data.shards import ShardReader
from lenscal.diagnostics.base import Context
from lenscal.diagnostics.config import load_diagnostic
from lenscal.diagnostics.runner import run_diagnostic
from lenscal.jobs.diagnose import diagnose_job, diagnostic_run
from lenscal.registry.store import Registry
from lenscal_flows.common import (
    TASK_RETRIES,
    TASK_RETRY_DELAYS,
    Progress,
    json_field,
    publish,
    transient,
)
from lenscal_flows.services import clients, service_endpoints
from lenscal_flows.settings import load_settings


@task(
    name="diagnostic-step",
    cache_policy=NO_CACHE,
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=transient,
)
def run_step(definition_name: str, step: str, ctx: Context, out: Path, preset: str) -> list[str]:
    """One step (a check) into OUT/<step>; a step finished earlier is reused."""
    run_diagnostic(load_diagnostic(definition_name), ctx, out, preset=preset, only=[step])
    done = json.loads((out / step / "step.json").read_text())
    for line in done.get("headline", []):
        get_run_logger().info("%s: %s", step, line)
    return list(done.get("headline", []))


@task(name="diagnostic-report", cache_policy=NO_CACHE)
def finish(definition_name: str, ctx: Context, out: Path, preset: str) -> Path:
    """The run's metrics.json and report.md from its finished steps."""
    run_diagnostic(load_diagnostic(definition_name), ctx, out, preset=preset, registry=Registry())
    return out / "report.md"


def run_definition(
    definition: str,
    preset: str = "full",
    only: list[str] | None = None,
    hosts: str | None = None,
    model: str | None = None,
    out: str | None = None,
    run_id: str | None = None,
    restart: bool = False,
) -> str:
    """The job of `lenscal diagnose`, one Prefect task per step."""
    logger = get_run_logger()
    settings = load_settings()
    job = diagnose_job(
        definition=definition,
        hosts=settings.need("hosts", hosts),
        out=out,
        results=settings.results,
        preset=preset,
        only=only,
        run_id=run_id,
        restart=restart,
    )
    _, steps = job.load()  # a bad preset, step or run ID fails here, before any service starts
    registry = Registry()
    with service_endpoints(settings, model) as endpoints, clients(endpoints) as (scorer, injector):
        ctx = Context(hosts=ShardReader(job.hosts), scorer=scorer, injector=injector, model=endpoints.model)
        # The job holds the directory for the whole run (its steps lock it again, reentrantly).
        with diagnostic_run(job, ctx, registry) as session:
            target = session.out
            loaded = session.definition
            logger.info("%s (%s preset): %d step(s) -> %s", loaded.id, preset, len(steps), target)
            progress = Progress(len(steps) + 1, f"{loaded.id}: steps done")
            headline: list[str] = []
            for step in steps:
                lines = run_step.with_options(name=f"step-{step.name}")(
                    definition, step.name, ctx, target, preset
                )
                headline += [f"{step.name}: {line}" for line in lines]
                progress.advance()
            report = finish(definition, ctx, target, preset)
            progress.advance()
    figures = [
        target / s.name / f for s in steps for f in json_field(target / s.name / "step.json", "figures") or []
    ]
    publish(target, f"{loaded.id} ({preset})", headline, figures, key=f"{loaded.id}-summary")
    logger.info("report: %s", report)
    return str(target)


@flow(name="diagnostic", log_prints=True, persist_result=True)
def diagnostic_flow(
    definition: str,
    preset: str = "full",
    only: list[str] | None = None,
    hosts: str | None = None,
    model: str | None = None,
    out: str | None = None,
    run_id: str | None = None,
    restart: bool = False,
) -> str:
    """A diagnostic battery (configs/diagnostics/<definition>.yaml) at a preset (full, demo)."""
    return run_definition(definition, preset, only, hosts, model, out, run_id, restart)


@flow(name="evaluate", log_prints=True, persist_result=True)
def evaluate_flow(
    definition: str,
    preset: str = "full",
    only: list[str] | None = None,
    hosts: str | None = None,
    model: str | None = None,
    out: str | None = None,
    run_id: str | None = None,
    restart: bool = False,
) -> str:
    """An evaluation run (E04-eval, E04-IM1, E04-IM2: configs/diagnostics) at a preset."""
    return run_definition(definition, preset, only, hosts, model, out, run_id, restart)
