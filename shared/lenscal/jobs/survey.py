"""The survey job: `lenscal score-survey` and the ``score-survey`` flow."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lenscal.backends import Services
from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.home import FULL, apply_preset, read_config
from lenscal.scoring.api import Scorer
from lenscal.scoring.meta import MetaLearner, load_meta
from lenscal.scoring.survey import CatalogPlan, make_plan, score_survey, survey_catalog
from lenscal.validation import validated


class SurveyError(LenscalError):
    """Bad survey settings or job parameters (the message names the key)."""


class SurveySettings(BaseModel):
    """How a survey is cut and streamed (configs/surveys/<name>.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    part_rows: int = Field(65_536, ge=1)
    read_rows: int = Field(4096, ge=1)
    top_k: int = Field(1000, ge=1)
    streams_per_replica: int = Field(4, ge=1)
    per_message: int = Field(64, ge=1)


def load_survey_settings(
    name_or_path: str | Path = "dr10", preset: str = FULL, **overrides: Any
) -> SurveySettings:
    path, raw = read_config("surveys", name_or_path, what="survey settings", error=SurveyError)
    raw = apply_preset(raw, preset, source=str(path), error=SurveyError)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return validated(SurveySettings, raw, error=SurveyError, source=str(path))


class SurveyJob(BaseModel):
    """Every cutout of a shard directory scored into a partitioned catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shards: Path
    out: Path | None = None  # default: <results>/survey/<shards>_<model IDs>
    results: Path = Path("results")
    settings: str = "dr10"
    preset: str = FULL
    split: str | None = None
    meta: Path | None = None  # a meta-learner scored alongside its members
    rank_by: str | None = None
    float32: bool = False
    part_rows: int | None = Field(None, ge=1)
    read_rows: int | None = Field(None, ge=1)
    top_k: int | None = Field(None, ge=1)
    streams_per_replica: int | None = Field(None, ge=1)
    per_message: int | None = Field(None, ge=1)

    def resolved(self) -> SurveySettings:
        """The settings at the preset with the job's overrides (read once per job)."""
        return self.settings_loaded

    @cached_property
    def settings_loaded(self) -> SurveySettings:
        return load_survey_settings(
            self.settings,
            self.preset,
            part_rows=self.part_rows,
            read_rows=self.read_rows,
            top_k=self.top_k,
            streams_per_replica=self.streams_per_replica,
            per_message=self.per_message,
        )

    def learner(self) -> MetaLearner | None:
        return load_meta(self.meta) if self.meta else None

    def target(self, plan: CatalogPlan) -> Path:
        if self.out is not None:
            return self.out
        names = "+".join(m["model_id"] for m in plan.models)
        return self.results / "survey" / f"{self.shards.name}_{names}"


def survey_job(**values: Any) -> SurveyJob:
    return validated(SurveyJob, values, error=SurveyError, source="survey job")


def wire_options(job: SurveyJob, services: Services) -> dict[str, Any]:
    """gRPC options of the survey's scorer client: streams, message size, wire dtype."""
    if not services.remote:
        return {}
    settings = job.resolved()
    return {
        "streaming": True,
        "concurrency": settings.streams_per_replica * len(services.scorers),
        "per_message": settings.per_message,
        "wire_dtype": "float32" if job.float32 else "float16",
    }


@dataclass(frozen=True)
class SurveySession:
    plan: CatalogPlan
    out: Path
    reader: ShardReader
    settings: SurveySettings
    learner: MetaLearner | None


@contextlib.contextmanager
def survey_run(job: SurveyJob, scorer: Scorer, models: list[str]) -> Iterator[SurveySession]:
    """The catalogue planned (``models``: served names; none: every loaded model), its
    directory held and opened for the block; the caller scores the parts and finishes it."""
    settings, learner = job.resolved(), job.learner()
    reader = ShardReader(job.shards)
    plan = make_plan(
        scorer, reader, models=models, meta=learner, split=job.split, part_rows=settings.part_rows
    )
    target = job.target(plan)
    with survey_catalog(target, plan):
        yield SurveySession(plan, target, reader, settings, learner)


def run_survey_job(job: SurveyJob, services: Services, *, progress: bool | None = None) -> dict[str, Any]:
    """The whole catalogue in this process (resumable): plan, parts, check, candidates."""
    settings, learner = job.resolved(), job.learner()
    reader = ShardReader(job.shards)
    with services.open_scorer(**wire_options(job, services)) as scorer:
        scorer.wait_ready()
        names = list(services.models) if services.remote else []
        target = job.out
        if target is None:  # named after the models' IDs, which the scorer knows
            plan = make_plan(scorer, reader, models=names, meta=learner, split=job.split)
            target = job.target(plan)
        summary = score_survey(
            scorer,
            reader,
            target,
            models=names,
            meta=learner,
            split=job.split,
            part_rows=settings.part_rows,
            read_rows=settings.read_rows,
            top_k=settings.top_k,
            rank_by=job.rank_by,
            progress=progress,
        )
    return {**summary, "out": str(target)}
