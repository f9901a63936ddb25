"""`lenscal diagnose ID|FILE`: a diagnostic battery (D01-D07, E04-*) from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.device import DEVICE_HELP
from lenscal.options import TlsCa, TokenFile
from lenscal.security import client_auth

app = typer.Typer()


@app.command("diagnose")
def diagnose_command(
    definition: Annotated[
        str, typer.Argument(help="A diagnostic (configs/diagnostics/<ID>.yaml) or a YAML file.")
    ],
    hosts: Annotated[
        Path, typer.Option(help="Shard directory (manifest with split, label, tier, PSF, depth).")
    ],
    out: Annotated[Path, typer.Option(help="Results directory (rerun the same command to resume).")],
    model: Annotated[
        str, typer.Option(help="A bundle directory or a training run ID; with --scorer, a model name on it.")
    ] = "",
    scorer: Annotated[list[str] | None, typer.Option(help="Scorer host:port (repeat for replicas).")] = None,
    injector: Annotated[str | None, typer.Option(help="Injector host:port (default: in-process).")] = None,
    token_file: TokenFile = None,
    tls_ca: TlsCa = None,
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
    device: Annotated[str, typer.Option(help=f"In-process scoring and rendering: {DEVICE_HELP}.")] = "auto",
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """Run a diagnostic's steps in order (each a check writing tables, PNGs and metrics into
    OUT/<step>), then OUT/metrics.json and OUT/report.md; recorded in the registry."""
    import json

    from lenscal.backends import bundle_path, open_injector, open_scorer
    from lenscal.data.shards import ShardReader
    from lenscal.diagnostics.base import Context
    from lenscal.diagnostics.config import load_diagnostic, resolve
    from lenscal.diagnostics.runner import run_recorded
    from lenscal.registry.identity import default_run_id
    from lenscal.registry.ids import check_id, kind_of
    from lenscal.registry.store import Registry
    from lenscal.workspace import check_out

    # Every input is checked before any work, and by --dry-run too.
    loaded = load_diagnostic(definition)
    steps = resolve(loaded, preset, only)
    reader = ShardReader(hosts)
    check_out(out)
    chosen_id = run_id or default_run_id(loaded.id, preset)
    if not no_registry:
        check_id(kind_of(chosen_id) or "diagnostic", chosen_id)
    if not scorer and not model:
        raise typer.BadParameter("give --model BUNDLE|RUN_ID (in-process) or --scorer HOST:PORT")
    bundle = None if scorer else bundle_path(model, registry_url)
    auth = client_auth(token_file, tls_ca)
    if dry_run:
        typer.echo(f"{loaded.id} ({preset}): {len(reader)} hosts in {hosts} -> {out}")
        for step in steps:
            typer.echo(f"{step.name} ({step.check}): {json.dumps(step.params.model_dump(mode='json'))}")
        return
    opened = open_scorer(endpoints=scorer, auth=auth) if scorer else open_scorer(model=bundle, device=device)
    interactive = sys.stderr.isatty()
    with opened, open_injector(endpoint=injector, device=device, auth=auth) as inject_with:
        opened.wait_ready()
        inject_with.wait_ready()
        ctx = Context(
            hosts=reader,
            scorer=opened,
            injector=inject_with,
            model=model if scorer else "",
            progress=interactive,
        )
        result = run_recorded(
            loaded,
            ctx,
            out,
            registry=None if no_registry else Registry(registry_url),
            run_id=chosen_id,
            preset=preset,
            only=only,
            restart=restart,
        )
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
