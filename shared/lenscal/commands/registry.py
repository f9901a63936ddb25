"""`lenscal registry ...`: thin commands over lenscal.registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lenscal.registry.ids import KINDS, RegistryError, kind_of

app = typer.Typer(
    name="registry",
    help="The experiment registry: list, show, add, invalidate, verify, render.",
    no_args_is_help=True,
)
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: $LENSCAL_REGISTRY_URL or SQLite in $LENSCAL_HOME)."),
]
ROLE_FOR_KIND = {"training": "checkpoint", "injection_model": "injection_model"}


def _registry(url: str | None) -> Any:
    from lenscal.registry.store import Registry

    return Registry(url)


@app.command("list")
def list_records(
    kind: Annotated[str | None, typer.Option(help=f"One of: {', '.join(KINDS)}.")] = None,
    status: Annotated[str | None, typer.Option(help="e.g. Trained, Complete, Invalidated.")] = None,
    filter_text: Annotated[
        str | None, typer.Option("--filter", help="Substring anywhere in the record.")
    ] = None,
    url: UrlOption = None,
) -> None:
    """List records as a table."""
    from rich.console import Console
    from rich.table import Table

    records = _registry(url).records(kind=kind, status=status, text=filter_text)
    table = Table("ID", "kind", "status", "parents", "metrics", "notes")
    for r in records:
        flag = " [red](upstream invalid)[/red]" if r.upstream_invalid else ""
        shown = list(r.metrics.items())[:6]
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown)
        if len(r.metrics) > len(shown):
            metrics += f", … ({len(r.metrics)} in all; `show`)"
        table.add_row(
            r.id,
            r.kind,
            r.status + flag,
            ", ".join(f"{p['role']}:{p['id']}" for p in r.parents),
            metrics,
            (r.notes[:60] + "…") if len(r.notes) > 60 else r.notes,
        )
    Console(width=200).print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Record ID or alias.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    url: UrlOption = None,
) -> None:
    """Show one record: status, lineage, metrics with their sources, artifacts, and why it is invalid."""
    record = _registry(url).get(run_id)
    if as_json:
        typer.echo(json.dumps(record.to_json(), indent=2, default=str))
        return
    typer.echo(f"{record.id} ({record.kind}) status: {record.status}")
    if record.invalidated:
        typer.echo(f"  INVALIDATED: {record.invalidated_reason}")
        if record.superseded_by:
            typer.echo(f"  superseded by: {record.superseded_by}")
    for bad in record.upstream_invalid:
        typer.echo(f"  UPSTREAM INVALID: {bad['id']} was invalidated: {bad['reason']}")
    for p in record.parents:
        typer.echo(f"  parent {p['role']}: {p['id']}")
    for name, value in record.metrics.items():
        typer.echo(f"  metric {name} = {value}   [{record.metric_sources[name]}]")
    for a in record.artifacts:
        typer.echo(f"  artifact {a['path']} sha256 {a['sha256'][:16]}… {a['bytes']} B")
    for key in ("results_path", "config_sha256", "git_commit", "notes", "aliases"):
        value = getattr(record, key)
        if value:
            typer.echo(f"  {key}: {value}")


def _parse_metric(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise typer.BadParameter(f"--metric {text!r} must be NAME=NUMBER") from None


def _parse_parent(text: str) -> tuple[str, str]:
    role, sep, parent = text.partition(":")
    if not sep:
        parent = text
        role = ROLE_FOR_KIND.get(kind_of(text) or "", "other")
    return parent, role


@app.command()
def add(
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")],
    run_id: Annotated[str, typer.Option("--id", help="Record ID following the kind's naming rule.")],
    status: Annotated[str | None, typer.Option(help="Initial status (default depends on kind).")] = None,
    parent: Annotated[
        list[str] | None,
        typer.Option(help="Parent ID, or ROLE:ID (checkpoint, injection_model, grid, init_from)."),
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="NAME=NUMBER (prefer record-results).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON config to snapshot and hash.")] = None,
    notes: Annotated[str, typer.Option(help="Key finding.")] = "",
    description: Annotated[str, typer.Option(help="What the run is.")] = "",
    results_path: Annotated[
        str | None, typer.Option(help="results/<RunID>_<YYYYMMDD>_<description>/")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Add a record."""
    from lenscal.home import read_yaml

    snapshot = None if config is None else read_yaml(config, what="config", error=RegistryError)
    record = _registry(url).add(
        kind,
        run_id,
        status=status,
        parents=[_parse_parent(p) for p in parent or []],
        metrics=dict(_parse_metric(m) for m in metric or []),
        config=snapshot,
        notes=notes,
        description=description,
        results_path=results_path,
    )
    typer.echo(f"added {record.id} ({record.kind}, {record.status})")


@app.command("set-status")
def set_status(
    run_id: Annotated[str, typer.Argument()], status: Annotated[str, typer.Argument()], url: UrlOption = None
) -> None:
    """Change a record's status (Running, Trained, Complete, Failed, ...)."""
    record = _registry(url).set_status(run_id, status)
    typer.echo(f"{record.id}: {record.status}")


@app.command("record-results")
def record_results(
    run_id: Annotated[str, typer.Argument()],
    results_dir: Annotated[Path, typer.Argument(help="Directory holding metrics.json and the run's files.")],
    url: UrlOption = None,
) -> None:
    """Read a run's metrics from its metrics.json and hash its result files. A diagnostic or grid
    run that differs from what the record holds (checkpoint, preset, hosts) is refused."""
    from lenscal.registry.runs import record_results_of

    registry = _registry(url)
    record_results_of(registry, run_id, results_dir)
    record = registry.get(run_id)
    typer.echo(f"{record.id}: {len(record.metrics)} metrics, {len(record.artifacts)} artifacts recorded")


@app.command()
def invalidate(
    run_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why the record is invalid.")],
    superseded_by: Annotated[str | None, typer.Option(help="The record that replaces it.")] = None,
    url: UrlOption = None,
) -> None:
    """Invalidate a record; everything derived from it shows an invalid upstream."""
    registry = _registry(url)
    record = registry.invalidate(run_id, reason, superseded_by)
    derived = [r.id for r in registry.records() if any(u["id"] == record.id for u in r.upstream_invalid)]
    typer.echo(f"{record.id}: Invalidated; derived records flagged: {', '.join(derived) or 'none'}")


@app.command()
def alias(
    name: Annotated[str, typer.Argument(help="Alias, e.g. current-best.")],
    run_id: Annotated[str, typer.Argument()],
    url: UrlOption = None,
) -> None:
    """Point an alias at a record."""
    record = _registry(url).alias(name, run_id)
    typer.echo(f"{name} -> {record.id}")


@app.command()
def diff(
    a: Annotated[str, typer.Argument()], b: Annotated[str, typer.Argument()], url: UrlOption = None
) -> None:
    """Config, metric and lineage differences between two records."""
    result = _registry(url).diff(a, b)
    typer.echo(f"--- {result.a}\n+++ {result.b}")
    for section in ("fields", "config", "metrics"):
        for key, (va, vb) in getattr(result, section).items():
            typer.echo(f"{section}.{key}: {va!r} -> {vb!r}")


@app.command()
def verify(url: UrlOption = None) -> None:
    """Re-hash every artifact and re-read every metrics file; exit 1 on any difference."""
    problems = _registry(url).verify()
    for p in problems:
        typer.echo(f"{p.record_id}: {p.path}: {p.problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("registry verified: every artifact and metric matches its file")


@app.command()
def render(
    out: Annotated[Path | None, typer.Option(help="Write here (default: stdout).")] = None,
    url: UrlOption = None,
) -> None:
    """Write the registry as the team's EXPERIMENT_REGISTRY.md."""
    from lenscal.fsutil import atomic_write_text
    from lenscal.registry.markdown import render_markdown

    text = render_markdown(_registry(url))
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


@app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(help="A hand-kept EXPERIMENT_REGISTRY.md.")], url: UrlOption = None
) -> None:
    """Import the team's markdown registry (every table and row)."""
    from lenscal.registry.markdown import import_markdown

    if not path.is_file():
        raise RegistryError(f"{path}: no such file")
    created = import_markdown(_registry(url), path)
    typer.echo(f"imported {len(created)} records from {path}")
