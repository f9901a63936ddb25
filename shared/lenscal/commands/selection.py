"""`lenscal grid run | compare | plot | show | replay` (making grids) and `lenscal selection
show | export | apply | compare` (using what a grid measured): the selection function from
the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lenscal.backends import Services
from lenscal.commands.options import takes_services

if TYPE_CHECKING:
    from lenscal.selection.function import SelectionFunction, Weights

grid_app = typer.Typer(
    name="grid", help="Selection-function grids: run, compare, show, replay.", no_args_is_help=True
)


@grid_app.command("run")
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


@grid_app.command("compare")
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


@grid_app.command("plot")
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


@grid_app.command("show")
def show_command(directory: Annotated[Path, typer.Argument(help="Grid results directory.")]) -> None:
    """The pooled marginal completeness of a grid run, in the terminal."""
    _print_marginal(directory)


@grid_app.command("replay")
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


# --- lenscal selection: what a grid measured, as a product ----------------------------------

selection_app = typer.Typer(
    name="selection",
    help="A grid's selection function: show it, export it (FITS/ECSV/HDF5), apply it to a "
    "catalogue, compare two finders.",
    no_args_is_help=True,
)
Threshold = Annotated[str, typer.Option(help="Detection threshold label (p>=0.3, p>=0.5, fpr=0.001, ...).")]
Magnitude = Annotated[
    str | None, typer.Option(help="A fourth axis from the injections: source_mag or lensed_mag.")
]


@selection_app.command("show")
def selection_show_command(
    directory: Annotated[Path, typer.Argument(help="Grid results directory.")],
    threshold: Threshold = "p>=0.5",
    by: Annotated[str, typer.Option(help="Axis of the marginal: theta_e, psf_fwhm, depth, ...")] = "theta_e",
    population: Annotated[
        Path | None,
        typer.Option(
            help="Weight cells by this catalogue's PSF x depth (psfsize_r, psfdepth_r), not by injections."
        ),
    ] = None,
    magnitude: Magnitude = None,
    out: Annotated[Path | None, typer.Option(help="Also write the marginal as CSV here.")] = None,
) -> None:
    """The selection function's provenance and one marginal (pooled by injections, or weighted
    by a population's PSF and depth), with Jeffreys intervals."""
    from rich.console import Console
    from rich.table import Table

    from lenscal.selection.function import SelectionFunction, citation

    sf = SelectionFunction.load(directory, magnitude=magnitude)
    weights: Weights | None = None
    if population is not None:
        weights = _population_weights(sf, population)
    table = sf.marginal(by, threshold=threshold, weights=weights)
    console = Console(width=160)
    console.print(citation(sf.provenance))
    if weights is not None:
        console.print(f"weighted by {weights.source}: {weights.sample_size:,} objects, "
                      f"{weights.outside:,} outside the grid's PSF x depth (left out)")  # fmt: skip
    title = f"{sf.provenance['grid']}: completeness at {threshold} by {by} ({table['weighting'][0]})"
    columns = ("injected k/n", "completeness", "Jeffreys 68%", "Jeffreys 95%", "n_eff", "weight on data")
    view = Table(by, *columns, title=title)
    for _, r in table.iterrows():
        value = "no data" if r.no_data else f"{r.completeness:.4f}"
        view.add_row(f"{r[by]:g}", f"{int(r.k)}/{int(r.n)}", value,
                     f"[{r.jeffreys68_low:.4f}, {r.jeffreys68_high:.4f}]",
                     f"[{r.jeffreys95_low:.4f}, {r.jeffreys95_high:.4f}]",
                     f"{r.n_effective:.1f}", f"{r.weight_covered:.1%}")  # fmt: skip
    console.print(view)
    if out is not None:
        from lenscal.selection.apply import write_catalog

        typer.echo(f"-> {write_catalog(table, out)}")


def _population_weights(sf: SelectionFunction, path: Path) -> Weights:
    from lenscal.selection.apply import CatalogColumns, observing_conditions, read_catalog

    conditions = observing_conditions(read_catalog(path), CatalogColumns())
    return sf.weights_from(conditions, source=f"PSF x depth of {path.name}")


@selection_app.command("export")
def selection_export_command(
    directory: Annotated[Path, typer.Argument(help="Grid results directory.")],
    out: Annotated[Path, typer.Option(help="sf.fits, sf.ecsv or sf.h5: the format is the suffix.")],
    magnitude: Magnitude = None,
) -> None:
    """The selection function as astropy tables (one per threshold): bin edges and centres with
    units, k, n, completeness, Jeffreys 68%/95% limits, a no-data mask, provenance in the
    header. Readable with astropy alone."""
    from lenscal.selection.export import export
    from lenscal.selection.function import SelectionFunction, citation

    sf = SelectionFunction.load(directory, magnitude=magnitude)
    path = export(sf, out)
    cells = int(sf.n.size)
    typer.echo(
        f"{len(sf.thresholds)} threshold(s) x {cells} cells ({int((sf.n > 0).sum())} with data) -> {path}"
    )
    typer.echo(f"cite: {citation(sf.provenance)}")


@selection_app.command("apply")
def selection_apply_command(
    directory: Annotated[Path, typer.Argument(help="Grid results directory.")],
    catalog: Annotated[Path, typer.Option(help="Catalogue: .csv, .parquet or .fits.")],
    out: Annotated[
        Path, typer.Option(help="The catalogue with detection probabilities (.csv, .parquet, .fits).")
    ],
    threshold: Threshold = "p>=0.5",
    theta_e_column: Annotated[str, typer.Option(help="Einstein radius column, arcsec.")] = "theta_e",
    psf_column: Annotated[str, typer.Option(help="r-band PSF FWHM column, arcsec.")] = "psfsize_r",
    depth_column: Annotated[
        str | None,
        typer.Option(help="r-band 5-sigma depth column, AB mag (default: from --psfdepth-column)."),
    ] = None,
    psfdepth_column: Annotated[
        str, typer.Option(help="Tractor point-source depth column, nmgy^-2, converted as the grid does.")
    ] = "psfdepth_r",
    where: Annotated[
        str | None, typer.Option(help='Keep only rows matching this pandas query, e.g. "label == 1".')
    ] = None,
    method: Annotated[
        str, typer.Option(help="nearest (the cell's k/n) or linear (between centres).")
    ] = "nearest",
    scores: Annotated[
        Path | None,
        typer.Option(help="Finder scores of the same objects (lenscal score output): adds the closure test."),
    ] = None,
    id_column: Annotated[str, typer.Option(help="Object ID column joining --scores.")] = "galaxy_id",
    score_column: Annotated[str, typer.Option(help="Probability column of --scores.")] = "probability",
) -> None:
    """Each object's detection probability and Jeffreys interval from the grid's selection
    function; objects outside the grid are flagged (NaN, never extrapolated). With --scores,
    the closure test: predicted detection fraction beside the finder's measured recall on these
    objects, per theta_E bin, both with 95% intervals (OUT's stem + _closure.csv/.png/.json)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from lenscal.errors import LenscalError
    from lenscal.fsutil import atomic_write_text
    from lenscal.selection.apply import (
        CatalogColumns,
        apply,
        closure,
        closure_figure,
        read_catalog,
        read_scores,
        write_catalog,
    )
    from lenscal.selection.function import SelectionFunction

    sf = SelectionFunction.load(directory)
    sf.counts(threshold)  # an unknown threshold fails before the catalogue is read
    frame = read_catalog(catalog)
    if where:
        try:
            frame = frame.query(where)
        except Exception as exc:  # pandas raises many types for a bad expression
            raise LenscalError(f"--where {where!r}: {type(exc).__name__}: {exc}") from None
    columns = CatalogColumns(theta_e=theta_e_column, psf_fwhm=psf_column, depth=depth_column,
                             psfdepth=psfdepth_column)  # fmt: skip
    applied = apply(sf, frame, threshold=threshold, columns=columns, method=method)
    write_catalog(applied, out)
    inside = applied["p_detect"].notna()
    typer.echo(
        f"{len(applied)} objects: {int(inside.sum())} with a detection probability, "
        f"{int(applied['sf_outside'].sum())} outside the grid, {int(applied['sf_no_data'].sum())} in cells "
        f"without data -> {out}"
    )
    if scores is None:
        return
    table = closure(sf, applied, read_scores(scores, id_column, score_column), id_column=id_column,
                    threshold=threshold)  # fmt: skip
    stem = out.with_name(f"{out.stem}_closure")
    table.to_csv(stem.with_suffix(".csv"), index=False)
    summary = {"grid": str(directory), "catalog": str(catalog), "scores": str(scores), "where": where,
               "threshold": threshold, "threshold_value": sf.thresholds[threshold],
               "excluded": table.attrs["excluded"], "rows": table.to_dict(orient="records")}  # fmt: skip
    atomic_write_text(stem.with_suffix(".json"), json.dumps(summary, indent=1, default=str) + "\n")
    model = (sf.provenance.get("checkpoint") or {}).get("model")
    closure_figure(
        table, stem.with_suffix(".png"),
        f"Closure test at {threshold}: grid {sf.provenance['grid']}, finder {model}\n"
        f"against {catalog.name}" + (f" where {where}" if where else ""),
        mock=bool(sf.provenance.get("mock_hosts")),
    )  # fmt: skip
    view = Table("theta_E bin", "objects", "predicted (95%)", "measured k/n (95%)", "measured - predicted",
                 title=f"closure test at {threshold}")  # fmt: skip
    for _, r in table.iterrows():
        view.add_row(
            str(r.theta_e_bin), str(r.objects),
            f"{r.predicted:.3f} [{r.predicted95_low:.3f}, {r.predicted95_high:.3f}]",
            f"{r.measured_k}/{r.objects} = {r.measured:.3f} "
            f"[{r.measured95_low:.3f}, {r.measured95_high:.3f}]",
            f"{r.measured_minus_predicted:+.3f}",
        )  # fmt: skip
    Console(width=160).print(view)
    excluded = table.attrs["excluded"]
    typer.echo(f"left out of the closure: {excluded}")
    typer.echo(f"-> {stem.with_suffix('.csv')}, {stem.with_suffix('.png')}")


@selection_app.command("compare")
def selection_compare_command(
    a: Annotated[Path, typer.Argument(help="Grid results directory of finder A.")],
    b: Annotated[Path, typer.Argument(help="The same grid run with finder B (differences are B - A).")],
    out: Annotated[Path | None, typer.Option(help="Where to write (default B/finders_<A>).")] = None,
    threshold: Threshold = "p>=0.5",
    force: Annotated[
        bool, typer.Option("--force", help="Compare runs that differ in more than the finder.")
    ] = False,
) -> None:
    """Two finders' selection functions on one grid: paired per injection when the runs made
    the same injections (same grid, seed and hosts), per cell and per theta_E bin, cells whose
    95% interval excludes 0 marked; a figure, tables and finders.json."""
    from rich.console import Console
    from rich.table import Table

    from lenscal.selection.finders import compare_finders

    result = compare_finders(a, b, out=out or (b / f"finders_{a.name}"), threshold=threshold, force=force)
    typer.echo(f"A = {result.model_a}, B = {result.model_b}; {result.comparison.pairing}")
    for field, (va, vb) in result.summary["differences_besides_the_finder"].items():
        typer.echo(f"  also differs (forced): {field}: {va} -> {vb}")
    rows = result.theta[result.theta["threshold"] == threshold]
    view = Table("theta_E", "A k/n", "B k/n", "B - A", "95% interval", "",
                 title=f"completeness by theta_E at {threshold} ({result.comparison.method})")  # fmt: skip
    for _, r in rows.iterrows():
        view.add_row(f"{r.theta_e_bin:g}", f"{int(r.k_a)}/{int(r.n_a)}", f"{int(r.k_b)}/{int(r.n_b)}",
                     f"{r.difference:+.4f}", f"[{r.newcombe95_low:+.4f}, {r.newcombe95_high:+.4f}]",
                     "excludes 0" if r.b_minus_a_excludes_0 else "")  # fmt: skip
    Console(width=160).print(view)
    counts = result.summary["thresholds"][threshold]
    if counts["false_positives_a"] and counts["false_positives_b"]:
        (fa, na), (fb, nb) = counts["false_positives_a"], counts["false_positives_b"]
        note = "" if threshold.startswith("fpr=") else " (a fixed p threshold; fpr= compares at one rate)"
        typer.echo(f"false positives at {threshold}: A {fa}/{na}, B {fb}/{nb} validation negatives{note}")
    typer.echo(
        f"cells: B better in {counts['cells_b_better']}, A better in {counts['cells_a_better']}, "
        f"indistinguishable in {counts['cells_indistinguishable']} of {counts['cells_with_data']} with data"
    )
    typer.echo(f"-> {result.out} (finders.png, finders_theta_e.csv, significant_cells.csv)")


#: Both groups from one module: the package lenscal.selection drives them.
app = typer.Typer()
app.add_typer(grid_app)
app.add_typer(selection_app)
