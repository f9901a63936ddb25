"""Flow ``train``: a training config (configs/train: gen1-gen5c, resnet-gen1/2,
paperIV_resnet18, demo_resnet, or any file) on the configured shards, recorded in the
registry; resumes after a kill; a run already trained is reused, not retrained. The demo
preset trains briefly on CPU."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lenscal.errors import LenscalError
from lenscal.home import locate_config
from lenscal.registry.store import Registry
from lenscal.training.config import load_config
from lenscal.training.loop import check_training_id, train
from lenscal_flows.common import publish
from lenscal_flows.settings import load_settings

#: The demo preset: a few short epochs that run on two CPU cores.
DEMO = [
    "train.epochs=3",
    "train.batch_size=64",
    "train.effective_batch=64",
    "train.num_workers=0",
    "train.mixed_precision=false",
    "train.checkpoint_every=1",
    "train.device=cpu",
]


@task(name="train", cache_policy=NO_CACHE)
def run_training(config_path: str, overrides: list[str], run_id: str, restart: bool) -> str:
    config = load_config(config_path, overrides=overrides)
    result = train(
        config, config_path=config_path, registry=Registry(), run_id=run_id, restart=restart, progress=False
    )
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
    """Train from a config (name or file) at a preset (full, demo); returns the best bundle."""
    logger = get_run_logger()
    if preset not in ("full", "demo"):
        raise ValueError(f"preset: {preset!r} is not full or demo")
    path = locate_config("train", config, what="training config", error=LenscalError)
    settings = load_settings()
    chosen = check_training_id(run_id or path.stem)
    target = Path(out_dir) if out_dir else Path(settings.results) / "runs" / chosen
    values = [*(DEMO if preset == "demo" else []), f"train.out_dir={target}", f"train.run_id={chosen}"]
    shards = hosts or settings.hosts
    if shards:
        values += [f"dataset.shards_dir={shards}"]  # read instead of the config's manifest
    values += list(overrides or [])
    load_config(path, overrides=values)  # a bad override fails here, naming its key
    registry = Registry()
    best = target / "best"
    if (
        not restart
        and registry.exists(chosen)
        and registry.get(chosen).status == "Trained"
        and (best / "model.json").is_file()
    ):
        logger.info("%s is already trained (%s): reused", chosen, best)
        return str(best)
    bundle = run_training(str(path), values, chosen, restart)
    record = registry.get(chosen)
    headline = [f"{k} = {v}" for k, v in record.metrics.items() if "auc" in k.lower()][:6]
    publish(
        target, f"train {chosen} ({preset})", headline, [target / "training_curve.png"], key=f"train-{chosen}"
    )
    return bundle
