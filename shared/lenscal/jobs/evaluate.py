"""The evaluation job (`lenscal evaluate`) and the ensemble job (`lenscal meta fit`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lenscal.backends import Services
from lenscal.data.ingest import open_reader
from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.evaluation.evaluate import EvaluationResult, evaluate
from lenscal.evaluation.meta import FITS, MetaResult, run_meta
from lenscal.registry.ids import check_id
from lenscal.registry.runs import recorded_run
from lenscal.registry.store import Registry
from lenscal.validation import validated


class EvaluateJob(BaseModel):
    """A model on one split of a manifest (or its shards): AUC, pAUC, ECE, recall per tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: Path
    out: Path
    split: str = "val"
    shards: Path | None = None  # default: packed next to the manifest
    bootstrap: int = Field(1000, ge=0)
    run_id: str | None = None  # E<NN>-<suffix>; none: not recorded

    def check(self) -> None:
        if self.run_id is not None:
            check_id("evaluation", self.run_id)


def evaluate_job(**values: Any) -> EvaluateJob:
    return validated(EvaluateJob, values, error=LenscalError, source="evaluation job")


def run_evaluate_job(
    job: EvaluateJob, services: Services, *, progress: bool | None = None
) -> EvaluationResult:
    job.check()  # before any work
    reader = (
        open_reader(shards=job.shards)
        if job.shards
        else open_reader(manifest=job.manifest, progress=progress)
    )
    with services.open_scorer() as scorer:
        scorer.wait_ready()
        info = scorer.model_info(services.model)[0]
        registry = Registry(services.registry) if job.run_id else None
        with recorded_run(
            registry,
            job.run_id,
            kind="evaluation",
            results_dir=job.out,
            parents=[(info.model_id, "checkpoint")],
        ):
            return evaluate(
                scorer,
                reader,
                job.out,
                model=info.name,
                split=job.split,
                bootstrap=job.bootstrap,
                progress=progress,
            )


class MetaJob(BaseModel):
    """Paper IV's meta-learner over two or more finders, fitted and reported on two splits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shards: Path
    out: Path
    name: str = "paperIV_ensemble"  # its registry training ID
    stacker: str = "paperIV"
    fit_split: str | None = None
    test_split: str | None = None
    bootstrap: int = Field(10_000, ge=10)
    seed: int = 42
    record: bool = True

    def check(self, services: Services) -> None:
        if self.stacker not in FITS:
            raise LenscalError(f"--stacker {self.stacker!r}: known stackers are {', '.join(FITS)}")
        if self.fit_split is not None and self.fit_split == self.test_split:
            raise LenscalError(
                f"--fit-split {self.fit_split!r} equals --test-split {self.test_split!r}; give two different "
                "splits"
            )
        if self.record:
            check_id("training", self.name)


def meta_job(**values: Any) -> MetaJob:
    return validated(MetaJob, values, error=LenscalError, source="meta-learner job")


def run_meta_job(job: MetaJob, services: Services) -> MetaResult:
    job.check(services)  # before any work
    reader = ShardReader(job.shards)
    with services.open_scorer() as scorer:
        scorer.wait_ready()
        infos = [scorer.model_info(m)[0] for m in services.models] if services.remote else scorer.model_info()
        registry = Registry(services.registry) if job.record else None
        with recorded_run(
            registry,
            job.name,
            kind="training",
            results_dir=job.out,
            parents=[(i.model_id, "member") for i in infos],
            description=f"{job.stacker} meta-learner over " + ", ".join(i.name for i in infos),
            done_status="Trained",
        ):
            return run_meta(
                scorer,
                reader,
                job.out,
                name=job.name,
                models=[i.name for i in infos],
                stacker=job.stacker,
                fit_split=job.fit_split,
                test_split=job.test_split,
                bootstrap=job.bootstrap,
                seed=job.seed,
            )
