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
from lenscal.diagnostics.config import load_diagnostic, resolve
from lenscal.diagnostics.runner import record_details, run_diagnostic, run_identity
from lenscal.registry.runs import recorded_run
from lenscal.registry.store import Registry
from lenscal.workspace import clear_directory, run_lock
from lenscal_flows.common import (
    TASK_RETRIES,
    TASK_RETRY_DELAYS,
    Progress,
    json_field,
    publish,
    results_directory,
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
    logger = get_run_logger()
    settings = load_settings()
    loaded = load_diagnostic(definition)
    steps = resolve(loaded, preset, only)  # a bad preset or step fails here, before any work
    shards = settings.need("hosts", hosts)
    with service_endpoints(settings, model) as endpoints, clients(endpoints) as (scorer, injector):
        ctx = Context(hosts=ShardReader(shards), scorer=scorer, injector=injector, model=endpoints.model)
        _, digest = run_identity(loaded, ctx, preset)
        target = (
            Path(out)
            if out
            else results_directory(
                settings.results,
                run_id or loaded.id,
                preset,  # <ID>_<YYYYMMDD>_<preset>, e.g. D05_20261130_demo
                same_run=lambda d: json_field(d / "definition.json", "definition_sha256") == digest,
            )
        )
        # The flow holds the directory for the whole run (its steps lock it again, reentrantly).
        with run_lock(target, f"diagnostic flow ({loaded.id})"):
            if restart:
                clear_directory(target)
            logger.info("%s (%s preset): %d step(s) -> %s", loaded.id, preset, len(steps), target)
            registry = Registry()
            details = record_details(loaded, ctx, registry, run_id, preset)
            progress = Progress(len(steps) + 1, f"{loaded.id}: steps done")
            headline: list[str] = []
            with recorded_run(registry, details.pop("run_id"), results_dir=target, **details):
                for step in steps:
                    lines = run_step.with_options(name=f"step-{step.name}")(
                        definition,
                        step.name,
                        ctx,
                        target,
                        preset,
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
