"""`lenscal demo | run | deploy | worker`: the flows from the command line (added to the
`lenscal` command through the ``lenscal.commands`` entry point)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer()


def _parse(values: list[str] | None) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param {item!r}: write key=value (values are JSON, else text)")
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def _need_server(command: str) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        raise typer.BadParameter(
            f"`lenscal {command}` works against a running Prefect server: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api after `prefect server start`)"
        )


@app.command("run")
def run_command(
    ref: Annotated[str, typer.Argument(help="A registry ID (D05, E04-IM1, gen5a) or flow/deployment.")],
    param: Annotated[list[str] | None, typer.Option(help="key=value (JSON value), repeatable.")] = None,
    watch: Annotated[bool, typer.Option(help="Follow the run; exit 0 only when it completes.")] = False,
    pool: Annotated[str, typer.Option(help="Work pool.")] = "lenscal",
    timeout_s: Annotated[float | None, typer.Option(help="Give up watching after this long.")] = None,
) -> None:
    """Run a deployment by its registry ID. Without PREFECT_API_URL a local Prefect server
    and worker are started for the run (and the run is watched); with a server, a worker is
    started here only when none is online on the pool."""
    from lenscal_flows.deployments import check_parameters, find, register
    from lenscal_flows.local import prefect_server, prefect_worker
    from lenscal_flows.submit import submit, worker_online
    from lenscal_flows.submit import watch as follow

    spec = find(ref)
    given = _parse(param)
    check_parameters(spec, given)  # unknown or bad parameters fail here, before anything starts
    configured = bool(os.environ.get("PREFECT_API_URL"))
    with prefect_server() as url:
        register(pool)
        need_worker = not configured or not worker_online(pool)
        worker = prefect_worker(pool) if need_worker else None
        with worker if worker is not None else contextlib.nullcontext():
            run = submit(spec.full_name, given)
            typer.echo(f"{spec.full_name}: flow run {run.name} ({run.id}) on {url}")
            if not (watch or need_worker):
                return
            state, result = follow(run.id, echo=typer.echo, timeout_s=timeout_s)
    if result:
        typer.echo(f"result: {result}")
    if state != "COMPLETED":
        typer.echo(f"{spec.full_name}: {state}", err=True)
        sys.exit(1)


@app.command("deploy")
def deploy_command(pool: Annotated[str, typer.Option(help="Work pool (process type).")] = "lenscal") -> None:
    """Register every deployment (diagnostic/D01..., evaluate/E04-..., train/..., selection-grid/...,
    score-survey/survey) on the work pool of the server at PREFECT_API_URL."""
    from lenscal_flows.deployments import register

    _need_server("deploy")
    names = register(pool)
    typer.echo(f"{len(names)} deployments on pool {pool!r}: {', '.join(names)}")


@app.command("worker")
def worker_command(pool: Annotated[str, typer.Option(help="Work pool to poll.")] = "lenscal") -> None:
    """Register the deployments, then run a process worker on the pool (foreground): the one
    way runs execute. Run one per machine."""
    from lenscal_flows.deployments import register
    from lenscal_flows.local import QUIET

    _need_server("worker")
    register(pool)
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"],
    )


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo-output"),
    n: Annotated[int, typer.Option(help="Mock-survey cutouts.", min=100)] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the mock survey.")] = 0,
) -> None:
    """The main job on embedded defaults: mock survey -> shards -> the 195K ResNet trained
    briefly -> a local Prefect server and the services -> D05 at the demo preset through its
    deployment -> EXPERIMENT_REGISTRY.md. Reuses what an earlier run made."""
    from lenscal_flows.demo import run_demo

    run_demo(out, n=n, seed=seed, echo=typer.echo)
