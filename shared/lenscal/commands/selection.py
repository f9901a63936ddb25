"""`lenscal grid run | compare | show`: the selection function from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.backends import Services
from lenscal.commands.options import takes_services

app = typer.Typer(
    name="grid", help="Selection-function grids: run, compare, show, replay.", no_args_is_help=True
)


@app.command("run")
@takes_services(scores=True, injects=True)
def run_command(
    services: Services,
    grid: Annotated[str, typer.Option(help="Grid name (configs/grids/<name>.yaml) or a YAML file.")],
    hosts: Annotated[Path, typer.Option(help="Shard directory of the hosts (with psfsize_r, psfdepth_r).")],
    out: Annotated[Path, typer.Option(help="Results directory (rerun the same command to resume).")],
    preset: Annotated[
        str, typer.Option(help="full (the grid as written) or one of its presets (demo: 4 per cell).")
    ] = "full",
    per_cell: Annotated[
        int | None, typer.Option(help="Injections per cell (overrides the grid).", min=1)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed (overrides the grid).", min=0)] = None,
    run_id: Annotated[str | None, typer.Option(help="Record as this ID (E<NN>-<suffix> or D<NN>).")] = None,
    chunk_size: Annotated[int, typer.Option(help="Injections per injector/scorer call.", min=1)] = 256,
    force_fpr: Annotated[
        bool, typer.Option("--force-fpr", help="Use FPR thresholds that rest on too few negatives.")
    ] = False,
    restart: Annotated[bool, typer.Option(help="Discard a previous run in --out.")] = False,
) -> None:
    """Inject arcs into the grid's hosts, score them, and write completeness tables, plots and
    a per-injection table; resumable; recorded in the registry with --run-id."""
    from lenscal.jobs.grid import grid_job, run_grid_job

    job = grid_job(
        grid=grid,
        hosts=hosts,
        out=out,
        preset=preset,
        per_cell=per_cell,
        seed=seed,
        run_id=run_id,
        chunk_size=chunk_size,
        force_fpr=force_fpr,
        restart=restart,
    )
    job.config()  # every input checked before any service is opened
    result = run_grid_job(job, services, progress=sys.stderr.isatty())
    _print_marginal(out)
    typer.echo(
        f"{result.metrics['injections']} injections in {result.metrics['cells_with_data']} cells -> {out}"
    )


@app.command("compare")
def compare_command(
    a: Annotated[Path, typer.Argument(help="Results directory A.")],
    b: Annotated[Path, typer.Argument(help="Results directory B (differences are B - A).")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the comparison (default B/compare_<A>).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Compare grids whose geometry differs.")] = False,
    threshold: Annotated[
        str, typer.Option(help="Threshold of the difference heatmap (e.g. p>=0.3, fpr=0.001).")
    ] = "p>=0.5",
) -> None:
    """Per-cell and marginal completeness differences with Newcombe 95% intervals; refused
    (exit 2, naming every differing field) when the grids differ in geometry."""
    from rich.console import Console
    from rich.table import Table

    from lenscal.selection.compare import compare

    target = out or (b / f"compare_{a.name}")
    comparison = compare(a, b, force=force, out=target, threshold=threshold)
    for field, (va, vb) in comparison.treatment_differences.items():
        typer.echo(f"  compared: {field}: {va} -> {vb}")
    typer.echo(f"  {comparison.pairing}")
    table = Table(
        "threshold", "A k/n", "B k/n", "B - A", "95% interval", title=f"overall ({comparison.method})"
    )
    for _, r in comparison.marginals["overall"].iterrows():
        interval = f"[{r.newcombe95_low:+.4f}, {r.newcombe95_high:+.4f}]"
        a_count, b_count = f"{int(r.k_a)}/{int(r.n_a)}", f"{int(r.k_b)}/{int(r.n_b)}"
        table.add_row(str(r.threshold), a_count, b_count, f"{r.difference:+.4f}", interval)
    Console(width=160).print(table)
    typer.echo(f"-> {target}")


@app.command("plot")
def plot_command(
    directory: Annotated[Path, typer.Argument(help="Grid results directory.")],
    threshold: Annotated[
        str, typer.Option(help="Threshold of the heatmaps (e.g. p>=0.3, p>=0.5, fpr=0.001).")
    ] = "p>=0.5",
) -> None:
    """Draw a grid run's figures again (heatmaps at --threshold, marginals), PNG and PDF."""
    from lenscal.selection.compare import read_run
    from lenscal.selection.plots import grid_plots

    read_run(directory)  # a complete grid run, or a clear refusal
    for path in grid_plots(directory, threshold):
        typer.echo(f"-> {path} (+ {path.with_suffix('.pdf').name})")


@app.command("show")
def show_command(directory: Annotated[Path, typer.Argument(help="Grid results directory.")]) -> None:
    """The pooled marginal completeness of a grid run, in the terminal."""
    _print_marginal(directory)


@app.command("replay")
@takes_services(scores=False, injects=True)
def replay_command(
    services: Services,
    directory: Annotated[Path, typer.Argument(help="Grid results directory.")],
    number: Annotated[
        int, typer.Option(help="The injection's number (column `number` of injections.parquet).")
    ],
    hosts: Annotated[Path, typer.Option(help="The shard directory the run used.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write .npz and .png (default DIR/replay-N).")
    ] = None,
) -> None:
    """Regenerate one injection of a run alone (host, host + arc, arc) from the results
    directory and the hosts; prints its stored row and writes the images."""
    import pandas as pd

    from lenscal.data.shards import ShardReader
    from lenscal.selection.replay import replay, save_replay

    with services.open_injector() as inject_with:
        replayed = replay(directory, number, hosts=ShardReader(hosts), injector=inject_with)
    npz, png = save_replay(replayed, out or directory / f"replay-{number}")
    table = directory / "injections.parquet"
    if table.is_file():
        stored = pd.read_parquet(table, filters=[("number", "==", number)])
        if len(stored):
            typer.echo(stored.iloc[0].to_string())
    typer.echo(f"-> {npz}, {png}")


def _print_marginal(directory: Path) -> None:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from lenscal.selection.compare import read_run
    from lenscal.selection.tables import forced_note

    meta = read_run(directory)
    console = Console(width=160)
    for name, column in (("overall", None), ("theta_e", "theta_e_bin"), ("source_mag", "source_mag_bin")):
        frame = pd.read_csv(directory / f"marginal_{name}.csv")
        table = Table(*([column] if column else []), "threshold", "k/n", "completeness", "Jeffreys 68%",
                      "Jeffreys 95%", title=f"{meta['name']}: {name} (pooled counts)")  # fmt: skip
        for _, r in frame.iterrows():
            value = "no data" if r.no_data else f"{r.completeness:.4f}"
            cells = [str(r[column])] if column else []
            j68 = f"[{r.jeffreys68_low:.4f}, {r.jeffreys68_high:.4f}]"
            j95 = f"[{r.jeffreys95_low:.4f}, {r.jeffreys95_high:.4f}]"
            label = str(r.threshold) + forced_note(str(r.threshold), meta.get("thresholds", {}))
            table.add_row(*cells, label, f"{int(r.k)}/{int(r.n)}", value, j68, j95)
        console.print(table)
    refused = {k: v["refused"] for k, v in meta.get("thresholds", {}).items() if "refused" in v}
    for label, why in refused.items():
        console.print(f"[yellow]{label}: not computed: {why}[/yellow]")
