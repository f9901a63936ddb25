"""The ``lenscal`` command. Each command is a thin wrapper over library functions; every
LenscalError becomes one line on stderr and exit status 2."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from lenscal import __version__
from lenscal.errors import LenscalError
from lenscal.injection.cli import app as inject_app
from lenscal.registry.cli import app as registry_app

app = typer.Typer(
    name="lenscal",
    help="Calibrate strong-lens finders on DESI Legacy Surveys DR10 cutouts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
shards_app = typer.Typer(help="Inspect and verify packed shard directories.", no_args_is_help=True)
app.add_typer(shards_app, name="shards")
app.add_typer(registry_app, name="registry")
app.add_typer(inject_app, name="inject")
serve_app = typer.Typer(help="Run a lenscal gRPC service in the foreground.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


class StorageDType(StrEnum):
    float32 = "float32"
    float16 = "float16"


class OnError(StrEnum):
    fail = "fail"
    skip = "skip"


class Scheme(StrEnum):
    s70_30 = "70_30"
    s70_15_15 = "70_15_15"


@app.command()
def version() -> None:
    """Print the lenscal version."""
    typer.echo(__version__)


@app.command()
def info(
    paths: Annotated[list[Path], typer.Argument(help="Cutout files (.fits, .fits.gz, .npz).")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Read cutouts and print their shape, NaN counts and per-band pixel statistics (nmgy)."""
    import numpy as np

    from lenscal.data.cutouts import load_cutout
    from lenscal.survey import BANDS

    for path in paths:
        cut = load_cutout(path, size=None)
        stats = {
            band: {
                "nan": int(np.isnan(cut.data[i]).sum()),
                "median": float(np.nanmedian(cut.data[i])) if not np.isnan(cut.data[i]).all() else None,
                "max": float(np.nanmax(cut.data[i])) if not np.isnan(cut.data[i]).all() else None,
            }
            for i, band in enumerate(BANDS)
        }
        record = {
            "path": str(path),
            "shape": list(cut.data.shape),
            "nan_count": cut.nan_count,
            "bands": stats,
        }
        if json_out:
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{path}: shape {cut.data.shape}, {cut.nan_count} NaN pixels")
            for band, s in stats.items():
                typer.echo(
                    f"  {band}: NaN {s['nan']:5d}  median {s['median']!s:>12}  max {s['max']!s:>12} nmgy"
                )


@app.command()
def ingest(
    manifest: Annotated[Path, typer.Option(help="Manifest (Parquet or CSV) with galaxy_id and cutout_path.")],
    out: Annotated[Path, typer.Option(help="Shard directory to create or resume.")],
    dtype: Annotated[StorageDType, typer.Option(help="Storage dtype of the shards.")] = StorageDType.float32,
    shard_size: Annotated[int, typer.Option(help="Cutouts per shard file.", min=1)] = 4096,
    data_root: Annotated[
        Path | None, typer.Option(help="Base for relative cutout_path values (default: manifest folder).")
    ] = None,
    on_error: Annotated[
        OnError, typer.Option(help="fail: stop at an unreadable cutout; skip: store NaNs and record why.")
    ] = OnError.fail,
    workers: Annotated[int, typer.Option(help="Reader threads.", min=1)] = 4,
    overwrite: Annotated[bool, typer.Option(help="Replace shards built from another manifest.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pack every cutout a manifest references into memory-mappable shards (atomic, resumable)."""
    from lenscal.data.ingest import ingest as run_ingest

    report = run_ingest(
        manifest,
        out,
        dtype=dtype.value,
        shard_size=shard_size,
        data_root=data_root,
        on_error=on_error.value,
        workers=workers,
        overwrite=overwrite,
        progress=progress and sys.stderr.isatty(),
    )
    typer.echo(
        f"{report.rows} cutouts in {out} ({report.dtype}): {report.shards_written} shard(s) written, "
        f"{report.shards_reused} reused; {report.rows_with_nan} cutout(s) contain NaN pixels"
    )
    for row, error in report.failed_rows[:20]:
        typer.echo(f"  skipped row {row}: {error}", err=True)
    typer.echo(f"manifest with shard, shard_row, cutout_sha256, nan_count: {out / 'manifest.parquet'}")


@app.command()
def split(
    manifest: Annotated[Path, typer.Option(help="Manifest (Parquet or CSV) with ra and dec in degrees.")],
    scheme: Annotated[Scheme | None, typer.Option(help="Split scheme to assign.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pixel hash.")] = 42,
    out: Annotated[
        Path | None, typer.Option(help="Write here instead of updating MANIFEST in place.")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Report pixels shared between splits.")] = False,
    nside: Annotated[int, typer.Option(help="HEALPix nside (NESTED).")] = 128,
    ra_col: Annotated[str, typer.Option(help="Column holding RA [deg].")] = "ra",
    dec_col: Annotated[str, typer.Option(help="Column holding Dec [deg].")] = "dec",
) -> None:
    """Assign spatial HEALPix splits (writes `split` and `healpix_<nside>`) and/or check them.

    With --check alone, checks the manifest's existing `split` column; exits 1 on any leak.
    """
    from lenscal.data.manifest import read_manifest, write_manifest
    from lenscal.data.splits import assign_splits, check_splits, healpix_index

    if scheme is None and not check:
        raise typer.BadParameter("give --scheme to assign splits, --check to check them, or both")
    df = read_manifest(manifest, required=(ra_col, dec_col))
    df = df.rename(columns={ra_col: "ra", dec_col: "dec"})
    if scheme is not None:
        df["healpix_" + str(nside)] = healpix_index(df["ra"].to_numpy(), df["dec"].to_numpy(), nside)
        df["split"] = assign_splits(df["ra"].to_numpy(), df["dec"].to_numpy(), scheme.value, nside, seed)
        target = out or manifest
        write_manifest(df.rename(columns={"ra": ra_col, "dec": dec_col}), target)
        counts = df["split"].value_counts().to_dict()
        typer.echo(f"{len(df)} rows split {scheme.value} (seed {seed}, nside {nside}) -> {target}: {counts}")
    if check:
        report = check_splits(df, nside=nside)
        typer.echo(report.summary())
        if not report.ok:
            raise typer.Exit(1)


@shards_app.command("info")
def shards_info(directory: Annotated[Path, typer.Argument(help="Shard directory.")]) -> None:
    """Print a shard directory's index: dtype, shape, shard count, completeness."""
    from lenscal.data.shards import ShardIndex

    index = ShardIndex.read(directory)
    typer.echo(
        f"{directory}: {index.committed_rows}/{index.total_rows} cutouts {index.record_shape} {index.dtype} "
        f"in {len(index.shards)}/{index.planned_shards} shards; "
        f"{'complete' if index.complete else 'INCOMPLETE (rerun lenscal ingest to resume)'}"
    )


@shards_app.command("verify")
def shards_verify(directory: Annotated[Path, typer.Argument(help="Shard directory.")]) -> None:
    """Re-hash every shard file and every cutout record against the index; exit 1 on mismatch."""
    from lenscal.data.shards import ShardReader

    reader = ShardReader(directory, verify=True)
    bad = reader.verify_records()
    for row in bad[:20]:
        typer.echo(f"row {row}: record hash mismatch", err=True)
    if bad:
        raise typer.Exit(1)
    typer.echo(f"{directory}: {len(reader)} records in {len(reader.index.shards)} shards verified")


class CutoutFormat(StrEnum):
    fits = "fits"
    npz = "npz"


@app.command("mock-survey")
def mock_survey(
    out: Annotated[Path, typer.Option(help="Output directory.")],
    n: Annotated[int, typer.Option(help="Number of cutouts.", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same bytes.")] = 0,
    positive_fraction: Annotated[
        float, typer.Option(help="Fraction of lenses (label 1).", min=0, max=1)
    ] = 0.05,
    fmt: Annotated[
        CutoutFormat, typer.Option("--format", help="Cutout files: Legacy Survey FITS or team NPZ.")
    ] = (CutoutFormat.fits),
    scheme: Annotated[
        Scheme, typer.Option(help="HEALPix split scheme written into the manifest.")
    ] = Scheme.s70_30,
) -> None:
    """Write a DR10-like sample offline: Tractor-like catalogue, cutouts with per-band PSF and
    depth noise, neighbours, stars, hard confusers (N2) and lenses (Tier A/B), a manifest, a gallery."""
    from lenscal.mock import make_mock_survey

    report = make_mock_survey(
        out,
        n=n,
        seed=seed,
        positive_fraction=positive_fraction,
        fmt=fmt.value,
        split_scheme=scheme.value,
        progress=sys.stderr.isatty(),
    )
    typer.echo(
        f"{report.n} cutouts ({report.positives} lenses, {report.confusers} hard confusers) in "
        f"{report.seconds:.1f} s -> {report.manifest}; gallery {report.gallery}"
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo-output"),
    n: Annotated[int, typer.Option(help="Number of mock-survey cutouts.", min=20)] = 300,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Run the embedded defaults: mock survey -> shards -> split check -> injection -> preprocessing."""
    from lenscal.demo import run_demo

    summary = run_demo(out, n=n, seed=seed, progress=sys.stderr.isatty())
    typer.echo(json.dumps(summary, indent=2))


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Option(help="Training YAML (the team's dataset/augment/train schema).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved config; touch no data.")
    ] = False,
    data_root: Annotated[
        Path | None, typer.Option(help="Directory replacing those of dataset paths.")
    ] = None,
    set_values: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (YAML value), repeatable.")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Registry ID (default train.run_id or the config name).")
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="Discard train.out_dir and start over instead of resuming.")
    ] = False,
    no_registry: Annotated[bool, typer.Option("--no-registry", help="Do not record the run.")] = False,
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """Train a finder: shards -> preprocess -> AMP training; resumes after a kill; records the run."""
    import logging

    from lenscal.training.config import load_config

    resolved = load_config(config, overrides=set_values, data_root=data_root)
    if dry_run:
        typer.echo(json.dumps(resolved.snapshot(), indent=2))
        typer.echo(
            f"config sha256 {resolved.sha256()}; preprocessing {resolved.dataset.preprocess_spec().to_json()}"
        )
        return
    from lenscal.registry.store import Registry
    from lenscal.training.loop import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = None if no_registry else Registry(registry_url)
    result = train(
        resolved,
        config_path=config,
        registry=registry,
        run_id=run_id,
        restart=restart,
        progress=sys.stderr.isatty(),
    )
    typer.echo(
        f"{result.run_id or 'run'}: best val AUC {result.best_val_auc:.4f} at epoch {result.best_epoch} "
        f"({result.epochs_run} epochs on {result.device}) -> {result.out_dir / 'best'}"
    )


@app.command("export-onnx")
def export_onnx_command(bundle: Annotated[Path, typer.Argument(help="Checkpoint bundle directory.")]) -> None:
    """Write BUNDLE/model.onnx (dynamic batch; logits and embeddings) after a parity check with torch."""
    from lenscal.models.bundle import export_onnx

    typer.echo(f"wrote {export_onnx(bundle)} (ONNX Runtime logits within 1e-4 x max(1, |logit|) of torch)")


@app.command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Option(help="Checkpoint bundle directory.")],
    manifest: Annotated[Path, typer.Option(help="Manifest with split, label (and tier) columns.")],
    out: Annotated[Path, typer.Option(help="Results directory.")],
    split: Annotated[str, typer.Option(help="Split to score.")] = "val",
    shards: Annotated[
        Path | None, typer.Option(help="Shard directory (default: packed next to the manifest).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for AUC/pAUC intervals.", min=0)] = 1000,
    run_id: Annotated[str | None, typer.Option(help="Record as this evaluation ID (E<NN>-<suffix>).")] = None,
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """AUC, pAUC, ECE, recall/FPR per tier at fixed and FPR-derived thresholds, bootstrap intervals,
    ROC and reliability plots, metrics.json."""
    from lenscal.evaluation.evaluate import evaluate

    result = evaluate(
        model,
        manifest,
        out,
        split=split,
        shards=shards,
        device=device,
        bootstrap=bootstrap,
        progress=sys.stderr.isatty(),
    )
    m = result.metrics
    typer.echo(
        f"{split}: AUC {m['auc']:.4f}  pAUC {m['pauc']:.4f}  ECE {m['ece']:.4f}  "
        f"recall@FPR1e-3 {m['recall_at_fpr_1e-3']}  -> {out / 'metrics.json'}"
    )
    if run_id:
        from lenscal.registry.store import Registry

        registry = Registry(registry_url)
        if not registry.exists(run_id):
            parents = [(m["model_id"], "checkpoint")] if registry.exists(m["model_id"]) else []
            registry.add("evaluation", run_id, parents=parents)
        registry.record_results(run_id, out)
        registry.set_status(run_id, "Complete")


@app.command("score")
def score_command(
    endpoint: Annotated[list[str], typer.Option(help="Scorer host:port; repeat for replicas (round-robin).")],
    out: Annotated[Path, typer.Option(help="Output Parquet: galaxy_id, logit, probability.")],
    shards: Annotated[Path | None, typer.Option(help="Shard directory from `lenscal ingest`.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest (packed into shards next to it first).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Only rows of this split.")] = None,
    model: Annotated[str, typer.Option(help="Model name on the server (default: its default).")] = "",
    float32: Annotated[
        bool, typer.Option("--float32", help="Send float32 (default float16: half the bytes).")
    ] = False,
    per_message: Annotated[int, typer.Option(help="Cutouts per message.", min=1)] = 64,
    concurrency: Annotated[int, typer.Option(help="Messages in flight.", min=1)] = 8,
    streaming: Annotated[bool, typer.Option(help="Use ScoreStream instead of unary calls.")] = False,
    token_file: Annotated[Path | None, typer.Option(help="Bearer token file.")] = None,
    chunk: Annotated[int, typer.Option(help="Cutouts read from shards at a time.", min=1)] = 8192,
) -> None:
    """Score every cutout of a shard directory (or manifest) on scorer endpoints."""
    import numpy as np
    import pandas as pd

    from lenscal.clients.scorer import ScorerClient
    from lenscal.data.shards import ShardReader
    from lenscal.evaluation.evaluate import open_shards
    from lenscal.fsutil import atomic_path
    from lenscal.progress import progress_bar

    if (shards is None) == (manifest is None):
        raise typer.BadParameter("give --shards or --manifest")
    reader = ShardReader(shards) if shards is not None else open_shards(manifest, None, sys.stderr.isatty())  # type: ignore[arg-type]
    table = reader.manifest()
    rows = np.arange(len(reader)) if split is None else np.flatnonzero(table["split"].to_numpy() == split)
    token = token_file.read_text().strip() if token_file else None
    logits, probabilities = [], []
    with (
        ScorerClient(
            endpoint, per_message=per_message, wire_dtype="float32" if float32 else "float16", token=token
        ) as client,
        progress_bar(rows.size, "score", enabled=sys.stderr.isatty()) as advance,
    ):
        client.wait_ready()
        for start in range(0, rows.size, chunk):
            block = rows[start : start + chunk]
            result = client.score(
                reader.read(block, dtype=None),
                model=model,
                concurrency=concurrency,
                streaming=streaming,
                progress=advance,
            )
            logits.append(result.logits)
            probabilities.append(result.probabilities)
    frame = pd.DataFrame(
        {
            "galaxy_id": table["galaxy_id"].to_numpy()[rows],
            "logit": np.concatenate(logits) if logits else [],
            "probability": np.concatenate(probabilities) if probabilities else [],
        }
    )
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    typer.echo(f"{len(frame)} cutouts scored on {', '.join(endpoint)} -> {out}")


@serve_app.command("scorer")
def serve_scorer(
    model: Annotated[list[Path], typer.Option(help="Checkpoint bundle; repeat for several models.")],
    port: Annotated[int, typer.Option(help="Port (0 picks a free one and prints it).")] = 50051,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    engine: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    workers: Annotated[
        int, typer.Option(help="Server processes sharing the port (SO_REUSEPORT).", min=1)
    ] = 1,
    max_batch_size: Annotated[int, typer.Option(help="Cutouts per device batch.", min=1)] = 512,
    batch_wait_timeout_s: Annotated[
        float, typer.Option(help="Longest wait for a batch to fill, s.", min=0)
    ] = 0.005,
    max_queue: Annotated[int, typer.Option(help="Cutouts waiting before RESOURCE_EXHAUSTED.", min=1)] = 16384,
    metrics_port: Annotated[int, typer.Option(help="Prometheus port (worker i uses port + i); 0: off.")] = 0,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain for TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for TLS.")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File with the bearer token clients must send.")
    ] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (GPU).")] = False,
) -> None:
    """Serve lenscal.scorer.v1.Scorer: cross-request micro-batching, health, reflection, metrics."""
    from lenscal_scorer.server import ScorerOptions, serve

    serve(
        ScorerOptions(
            models=[str(m) for m in model],
            port=port,
            host=host,
            device=device,
            engine=engine,
            workers=workers,
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=batch_wait_timeout_s,
            max_queue=max_queue,
            metrics_port=metrics_port,
            tls_cert=str(tls_cert) if tls_cert else None,
            tls_key=str(tls_key) if tls_key else None,
            token_file=str(token_file) if token_file else None,
            compile=compile_model,
        )
    )


@serve_app.command("injector")
def serve_injector(
    port: Annotated[int, typer.Option(help="Port (0 picks a free one and prints it).")] = 50052,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port (0: off).")] = 0,
    workers: Annotated[int, typer.Option(help="RPC handler threads.", min=1)] = 8,
) -> None:
    """Serve lenscal.injector.v1.Injector (Render, Inject) with health, reflection and metrics."""
    import logging

    from lenscal_injector.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(port=port, host=host, device=device, metrics_port=metrics_port, max_workers=workers)


def main() -> None:
    try:
        app()
    except LenscalError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ValidationError as exc:  # a typed config or spec built from user input
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or exc.title}: {e['msg']}" for e in exc.errors())
        typer.echo(f"error: invalid {exc.title}: {problems}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
