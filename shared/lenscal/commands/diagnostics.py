"""`lenscal diagnose ID|FILE`: a diagnostic battery (D01-D07, E04-*) from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.backends import Services
from lenscal.commands.options import takes_services

app = typer.Typer()


@app.command("diagnose")
@takes_services(scores=True, injects=True)
def diagnose_command(
    services: Services,
    definition: Annotated[
        str, typer.Argument(help="A diagnostic (configs/diagnostics/<ID>.yaml) or a YAML file.")
    ],
    hosts: Annotated[
        Path, typer.Option(help="Shard directory (manifest with split, label, tier, PSF, depth).")
    ],
    out: Annotated[Path, typer.Option(help="Results directory (rerun the same command to resume).")],
    preset: Annotated[
        str, typer.Option(help="full (the team's counts) or a preset of the definition (demo).")
    ] = "full",
    only: Annotated[
        list[str] | None, typer.Option(help="Run only this step (repeat); others are reused.")
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Registry ID (default: the definition's ID for the full preset, <ID>_<YYYYMMDD>_<preset> "
            "otherwise). A record holding another run (checkpoint, preset, hosts) is refused."
        ),
    ] = None,
    no_registry: Annotated[bool, typer.Option("--no-registry", help="Do not record the run.")] = False,
    restart: Annotated[bool, typer.Option(help="Discard a previous run in --out.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved steps and exit.")] = False,
) -> None:
    """Run a diagnostic's steps in order (each a check writing tables, PNGs and metrics into
    OUT/<step>), then OUT/metrics.json and OUT/report.md; recorded in the registry."""
    import json

    from lenscal.data.shards import ShardReader
    from lenscal.jobs.diagnose import diagnose_job, run_diagnose_job
    from lenscal.workspace import check_out

    job = diagnose_job(
        definition=definition,
        hosts=hosts,
        out=out,
        preset=preset,
        only=only,
        run_id=run_id,
        record=not no_registry,
        restart=restart,
    )
    # Every input is checked before any work, and by --dry-run too.
    loaded, steps = job.load()
    reader = ShardReader(hosts)
    check_out(out)
    if not services.remote:
        services.bundles()
    services.auth()
    if dry_run:
        typer.echo(f"{loaded.id} ({preset}): {len(reader)} hosts in {hosts} -> {out}")
        for step in steps:
            typer.echo(f"{step.name} ({step.check}): {json.dumps(step.params.model_dump(mode='json'))}")
        return
    result = run_diagnose_job(job, services, progress=sys.stderr.isatty())
    for line in _headlines(out):
        typer.echo(line)
    reused = f" (reused: {', '.join(result.reused)})" if result.reused else ""
    typer.echo(f"{loaded.id}: {len(result.ran)} step(s) run{reused} -> {out / 'report.md'}")


def _headlines(out: Path) -> list[str]:
    import json

    lines = []
    for step_file in sorted(out.glob("*/step.json"), key=lambda p: p.stat().st_mtime):
        done = json.loads(step_file.read_text())
        lines.append(f"[{done['name']}]")
        lines += [f"  {h}" for h in done.get("headline", [])]
    return lines
