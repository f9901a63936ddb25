"""Flow ``train``: a training config (configs/train: gen1-gen5c, resnet-gen1/2,
paperIV_resnet18, demo_resnet, or any file) on the configured shards, recorded in the
registry; resumes after a kill; a run already trained is reused, not retrained. The demo
preset (in each config's YAML) trains briefly on CPU."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lenscal.errors import LenscalError
from lenscal.home import locate_config
from lenscal.jobs.train import TrainJob, run_train_job, train_job, trained_bundle
from lenscal.registry.store import Registry
from lenscal.training.loop import check_training_id
from lenscal_flows.common import publish
from lenscal_flows.settings import load_settings


@task(name="train", cache_policy=NO_CACHE)
def run_training(job: TrainJob) -> str:
    result = run_train_job(job, progress=False)
    return str(Path(result.out_dir) / "best")


@flow(name="train", log_prints=True, persist_result=True)
def train_flow(
    config: str,
    preset: str = "full",
    overrides: list[str] | None = None,
    hosts: str | None = None,
    run_id: str | None = None,
    out_dir: str | None = None,
    restart: bool = False,
) -> str:
    """The job of `lenscal train` from a config (name or file) at a preset of its YAML (full,
    demo); a run already trained is reused. Returns the best bundle."""
    logger = get_run_logger()
    settings = load_settings()
    path = locate_config("train", config, what="training config", error=LenscalError)
    chosen = check_training_id(run_id or path.stem)
    target = Path(out_dir) if out_dir else Path(settings.results) / "runs" / chosen
    shards = hosts or settings.hosts
    job = train_job(
        config=str(path),
        preset=preset,
        overrides=list(overrides or []),
        shards=shards,  # read instead of the config's manifest
        run_id=chosen,
        out_dir=target,
        restart=restart,
    )
    job.check()  # a bad preset or override fails here, naming its key
    registry = Registry()
    reused = trained_bundle(job, registry)
    if reused is not None:
        logger.info("%s is already trained (%s): reused", chosen, reused)
        return str(reused)
    bundle = run_training(job)
    record = registry.get(chosen)
    headline = [f"{k} = {v}" for k, v in record.metrics.items() if "auc" in k.lower()][:6]
    publish(
        target, f"train {chosen} ({preset})", headline, [target / "training_curve.png"], key=f"train-{chosen}"
    )
    return bundle
