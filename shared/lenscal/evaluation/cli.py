"""`lenscal evaluate`: a model (in-process or on a scorer) on a manifest split, recorded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.device import DEVICE_HELP
from lenscal.errors import LenscalError
from lenscal.options import TlsCa, TokenFile
from lenscal.security import client_auth

app = typer.Typer()


@app.command("evaluate")
def evaluate_command(
    model: Annotated[
        str, typer.Option(help="Checkpoint bundle directory (or, with --scorer, a model name on it).")
    ],
    manifest: Annotated[Path, typer.Option(help="Manifest with split, label (and tier) columns.")],
    out: Annotated[Path, typer.Option(help="Results directory.")],
    split: Annotated[str, typer.Option(help="Split to score.")] = "val",
    shards: Annotated[
        Path | None, typer.Option(help="Shard directory (default: packed next to the manifest).")
    ] = None,
    scorer: Annotated[
        list[str] | None, typer.Option(help="Scorer host:port to score on (repeat for replicas).")
    ] = None,
    token_file: TokenFile = None,
    tls_ca: TlsCa = None,
    device: Annotated[str, typer.Option(help=f"In-process: {DEVICE_HELP}.")] = "auto",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for AUC/pAUC intervals.", min=0)] = 1000,
    run_id: Annotated[str | None, typer.Option(help="Record as this evaluation ID (E<NN>-<suffix>).")] = None,
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """AUC, pAUC, ECE, recall/FPR per tier at fixed and FPR-derived thresholds, bootstrap intervals,
    ROC and reliability plots, metrics.json."""
    from lenscal.backends import open_scorer
    from lenscal.data.ingest import open_reader
    from lenscal.evaluation.evaluate import evaluate
    from lenscal.registry.ids import check_id
    from lenscal.registry.runs import recorded_run
    from lenscal.registry.store import Registry

    if run_id is not None:
        check_id("evaluation", run_id)  # before any work
    interactive = sys.stderr.isatty()
    reader = open_reader(shards=shards) if shards else open_reader(manifest=manifest, progress=interactive)
    on_server = bool(scorer)
    auth = client_auth(token_file, tls_ca)
    opened = (
        open_scorer(endpoints=scorer, auth=auth) if on_server else open_scorer(model=model, device=device)
    )
    with opened:
        opened.wait_ready()
        info = opened.model_info(model if on_server else "")[0]
        registry = Registry(registry_url) if run_id else None
        with recorded_run(
            registry, run_id, kind="evaluation", results_dir=out, parents=[(info.model_id, "checkpoint")]
        ):
            result = evaluate(
                opened,
                reader,
                out,
                model=info.name,
                split=split,
                bootstrap=bootstrap,
                progress=interactive,
            )
    m = result.metrics
    typer.echo(
        f"{split}: AUC {m['auc']:.4f}  pAUC {m['pauc']:.4f}  ECE {m['ece']:.4f}  "
        f"recall@FPR1e-3 {m['recall_at_fpr_1e-3']}  -> {out / 'metrics.json'}"
    )


meta_app = typer.Typer(name="meta", help="Paper IV's ensemble: a meta-learner over several finders.")
app.add_typer(meta_app)


@meta_app.command("fit")
def meta_fit_command(
    shards: Annotated[Path, typer.Option(help="Shard directory with split, label (and tier) columns.")],
    model: Annotated[
        list[str],
        typer.Option(
            help="A member finder: bundle directory or training run ID in-process, or a model name with"
            " --scorer (repeat: at least two)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Results directory (meta.json, metrics.json, roc.png).")],
    name: Annotated[
        str, typer.Option(help="The ensemble's name (registry training ID).")
    ] = "paperIV_ensemble",
    scorer: Annotated[
        list[str] | None, typer.Option(help="Scorer host:port serving the members (repeat for replicas).")
    ] = None,
    token_file: TokenFile = None,
    tls_ca: TlsCa = None,
    stacker: Annotated[
        str,
        typer.Option(
            help="paperIV: the team's MLP 2->300->1 on the finders' probabilities (fit on train, report "
            "on val); logistic: lenscal's logistic regression on standardised logits (fit on val, report on "
            "test)."
        ),
    ] = "paperIV",
    fit_split: Annotated[
        str | None, typer.Option(help="Split the meta-learner is fitted on (default: the stacker's).")
    ] = None,
    test_split: Annotated[
        str | None, typer.Option(help="Split it is reported on (default: the stacker's).")
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples (intervals, comparisons).", min=10)
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 42,
    device: Annotated[str, typer.Option(help=f"In-process: {DEVICE_HELP}.")] = "auto",
    no_registry: Annotated[bool, typer.Option("--no-registry", help="Do not record the run.")] = False,
    registry_url: Annotated[str | None, typer.Option(help="Registry database URL.")] = None,
) -> None:
    """Fit Paper IV's meta-learner (the team's MLP on the finders' probabilities, or lenscal's
    logistic stacker) on the fitting split, report the E04-eval metrics on the test split,
    each model's own bootstrap AUC interval, and whether it beats each member (paired-bootstrap
    95% interval of the AUC difference above zero). Equal or overlapping splits are refused."""
    from lenscal.backends import bundle_path, open_scorer
    from lenscal.data.shards import ShardReader
    from lenscal.evaluation.meta import FITS, run_meta
    from lenscal.registry.ids import check_id
    from lenscal.registry.runs import recorded_run
    from lenscal.registry.store import Registry

    if stacker not in FITS:
        raise LenscalError(f"--stacker {stacker!r}: known stackers are {', '.join(FITS)}")
    if fit_split is not None and fit_split == test_split:
        raise LenscalError(
            f"--fit-split {fit_split!r} equals --test-split {test_split!r}; give two different splits"
        )
    if not no_registry:
        check_id("training", name)  # before any work
    reader = ShardReader(shards)
    on_server = bool(scorer)
    auth = client_auth(token_file, tls_ca)
    opened = (
        open_scorer(endpoints=scorer, auth=auth)
        if on_server
        else open_scorer(model=[bundle_path(m) for m in model], device=device)
    )
    with opened:
        opened.wait_ready()
        infos = [opened.model_info(m)[0] for m in model] if on_server else opened.model_info()
        registry = None if no_registry else Registry(registry_url)
        with recorded_run(
            registry,
            name,
            kind="training",
            results_dir=out,
            parents=[(i.model_id, "member") for i in infos],
            description=f"{stacker} meta-learner over " + ", ".join(i.name for i in infos),
            done_status="Trained",
        ):
            result = run_meta(
                opened,
                reader,
                out,
                name=name,
                models=[i.name for i in infos],
                stacker=stacker,
                fit_split=fit_split,
                test_split=test_split,
                bootstrap=bootstrap,
                seed=seed,
            )
    m = result.metrics
    own = m["auc_bootstrap"][name]["ci95"]
    typer.echo(
        f"{name} ({stacker}, fitted on {m['fit_split']}) on {m['test_split']}: AUC {m['auc']:.4f} "
        f"[{own[0]:.4f}, {own[1]:.4f}]  pAUC {m['pauc']:.4f}  ECE {m['ece']:.4f}"
    )
    for member, c in m["comparison"]["members"].items():
        low, high = c["delta_auc_95"]
        verdict = "beats it" if c["beats"] else "does not beat it"
        delta = f"{c['delta_auc']:+.4f} [{low:+.4f}, {high:+.4f}]"
        typer.echo(f"  vs {member}: AUC {c['auc']:.4f}, delta {delta}: {verdict}")
    typer.echo(f"-> {out / 'meta.json'}")
