"""`lenscal evaluate`: a model (in-process or on a scorer) on a manifest split, recorded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lenscal.backends import Services
from lenscal.commands.options import takes_services

app = typer.Typer()


@app.command("evaluate")
@takes_services(scores=True)
def evaluate_command(
    services: Services,
    manifest: Annotated[Path, typer.Option(help="Manifest with split, label (and tier) columns.")],
    out: Annotated[Path, typer.Option(help="Results directory.")],
    split: Annotated[str, typer.Option(help="Split to score.")] = "val",
    shards: Annotated[
        Path | None, typer.Option(help="Shard directory (default: packed next to the manifest).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for AUC/pAUC intervals.", min=0)] = 1000,
    run_id: Annotated[str | None, typer.Option(help="Record as this evaluation ID (E<NN>-<suffix>).")] = None,
) -> None:
    """AUC, pAUC, ECE, recall/FPR per tier at fixed and FPR-derived thresholds, bootstrap intervals,
    ROC and reliability plots, metrics.json."""
    from lenscal.jobs.evaluate import evaluate_job, run_evaluate_job

    job = evaluate_job(
        manifest=manifest, out=out, split=split, shards=shards, bootstrap=bootstrap, run_id=run_id
    )
    result = run_evaluate_job(job, services, progress=sys.stderr.isatty())
    m = result.metrics
    typer.echo(
        f"{split}: AUC {m['auc']:.4f}  pAUC {m['pauc']:.4f}  ECE {m['ece']:.4f}  "
        f"recall@FPR1e-3 {m['recall_at_fpr_1e-3']}  -> {out / 'metrics.json'}"
    )


meta_app = typer.Typer(name="meta", help="Paper IV's ensemble: a meta-learner over several finders.")
app.add_typer(meta_app)


@meta_app.command("fit")
@takes_services(scores=True, many_models=True)
def meta_fit_command(
    services: Services,
    shards: Annotated[Path, typer.Option(help="Shard directory with split, label (and tier) columns.")],
    out: Annotated[Path, typer.Option(help="Results directory (meta.json, metrics.json, roc.png).")],
    name: Annotated[
        str, typer.Option(help="The ensemble's name (registry training ID).")
    ] = "paperIV_ensemble",
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
    no_registry: Annotated[bool, typer.Option("--no-registry", help="Do not record the run.")] = False,
) -> None:
    """Fit Paper IV's meta-learner (the team's MLP on the finders' probabilities, or lenscal's
    logistic stacker) on the fitting split, report the E04-eval metrics on the test split,
    each model's own bootstrap AUC interval, and whether it beats each member (paired-bootstrap
    95% interval of the AUC difference above zero). Equal or overlapping splits are refused.
    Members: --model, repeated (at least two)."""
    from lenscal.jobs.evaluate import meta_job, run_meta_job

    if not services.models:
        raise typer.BadParameter("give the member finders: --model A --model B")
    job = meta_job(
        shards=shards,
        out=out,
        name=name,
        stacker=stacker,
        fit_split=fit_split,
        test_split=test_split,
        bootstrap=bootstrap,
        seed=seed,
        record=not no_registry,
    )
    result = run_meta_job(job, services)
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
