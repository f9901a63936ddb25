"""The diagnostic job: `lenscal diagnose` and the ``diagnostic`` / ``evaluate`` flows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from lenscal.backends import Services
from lenscal.data.shards import ShardReader
from lenscal.diagnostics.base import Context, DiagnosticError
from lenscal.diagnostics.config import DiagnosticDefinition, ResolvedStep, load_diagnostic, resolve
from lenscal.diagnostics.runner import DiagnosticResult, record_details, run_diagnostic, run_identity
from lenscal.home import FULL
from lenscal.registry.identity import default_run_id
from lenscal.registry.ids import check_id, kind_of
from lenscal.registry.runs import recorded_run
from lenscal.registry.store import Registry
from lenscal.validation import validated
from lenscal.workspace import clear_directory, find_run_directory, recorded_hash, run_lock


class DiagnoseJob(BaseModel):
    """A diagnostic battery (configs/diagnostics/<ID>.yaml or a file) at a preset, on hosts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    definition: str
    hosts: Path
    out: Path | None = None  # default: <results>/<run ID>_<YYYYMMDD>_<preset> (a rerun reuses it)
    results: Path = Path("results")
    preset: str = FULL
    only: list[str] | None = None
    run_id: str | None = None  # default: the ID for the full preset, <ID>_<YYYYMMDD>_<preset> otherwise
    record: bool = True
    restart: bool = False

    def load(self) -> tuple[DiagnosticDefinition, list[ResolvedStep]]:
        """The definition and the steps to run, every input checked before any work; loaded
        once per job."""
        return self.loaded

    @cached_property
    def loaded(self) -> tuple[DiagnosticDefinition, list[ResolvedStep]]:
        definition = load_diagnostic(self.definition)
        steps = resolve(definition, self.preset, self.only)
        if self.record:
            chosen = self.recorded_as(definition)
            check_id(kind_of(chosen) or "diagnostic", chosen)
        return definition, steps

    def recorded_as(self, definition: DiagnosticDefinition) -> str:
        return self.run_id or default_run_id(definition.id, self.preset)

    def target(self, definition: DiagnosticDefinition, digest: str) -> Path:
        if self.out is not None:
            return self.out
        return find_run_directory(
            self.results,
            self.run_id or definition.id,
            self.preset,  # <ID>_<YYYYMMDD>_<preset>, e.g. D05_20261130_demo
            same_run=lambda d: recorded_hash(d / "definition.json") == digest,
        )


def diagnose_job(**values: Any) -> DiagnoseJob:
    return validated(DiagnoseJob, values, error=DiagnosticError, source="diagnostic job")


@dataclass(frozen=True)
class DiagnosticSession:
    definition: DiagnosticDefinition
    steps: list[ResolvedStep]
    out: Path


@contextlib.contextmanager
def diagnostic_run(job: DiagnoseJob, ctx: Context, registry: Registry | None) -> Iterator[DiagnosticSession]:
    """The run's results directory chosen, held (locked), cleared on restart and recorded
    for the block; the caller runs the steps (all at once, or one task each) and the report."""
    definition, steps = job.load()
    _, digest = run_identity(definition, ctx, job.preset)
    target = job.target(definition, digest)
    with run_lock(target, f"diagnostic run ({definition.id})"):
        if job.restart:
            clear_directory(target)
        recording: Any = contextlib.nullcontext()
        if registry is not None:
            details = record_details(definition, ctx, registry, job.run_id, job.preset)
            recording = recorded_run(registry, details.pop("run_id"), results_dir=target, **details)
        with recording:
            yield DiagnosticSession(definition, steps, target)


def run_diagnose_job(
    job: DiagnoseJob, services: Services, *, progress: bool | None = None
) -> DiagnosticResult:
    """Every step in this process, then metrics.json and report.md; resumable; recorded."""
    job.load()
    registry = Registry(services.registry) if job.record else None
    with services.open_scorer() as scorer, services.open_injector() as injector:
        scorer.wait_ready()
        injector.wait_ready()
        ctx = Context(
            hosts=ShardReader(job.hosts),
            scorer=scorer,
            injector=injector,
            model=services.model,
            progress=progress,
        )
        with diagnostic_run(job, ctx, registry) as session:
            return run_diagnostic(
                session.definition, ctx, session.out, preset=job.preset, only=job.only, registry=registry
            )
