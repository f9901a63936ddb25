"""Diagnostic definitions: a YAML file in configs/diagnostics (or any path) naming the run's
registry ID, its steps in order (each a registered check with its parameters) and presets
that change parameters for smaller runs. D05 is the team's steps 1-10 (docs/science.md) in one file; a
new D08 is a new file.

    id: D05
    description: ...
    injection_model: IM1          # lineage, when the run injects
    steps:
      - name: ba_baseline         # the step's results directory under --out
        check: bright_arc
        params: {seed: 42, variants: [{name: baseline}]}
    presets:
      demo:                       # a step name or a check name -> parameter overrides
        bright_arc: {n_hosts: 16}
        grid_no_poisson: {grid: mock_demo, per_cell: 4}

Presets: ``full`` (the definition as written) always exists. Overrides by check name apply
to every step of that check; overrides by step name apply after them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lenscal.diagnostics.base import CheckParams, DiagnosticError, get_check
from lenscal.home import FULL, read_config
from lenscal.validation import validated
from lenscal.workspace import canonical_sha256

STEP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class StepDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    check: str
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class TeamHeadline(BaseModel):
    """One number the team recorded for this run, and where this run's own value is."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    label: str
    team: str = Field(
        "", description="the team's words, as in their registry's note; '' if they recorded none"
    )
    step: str = Field(description="the step whose metrics.json holds this run's value")
    metric: str = Field(description="'/'-separated path to the value in that step's metrics")
    threshold: str = ""
    interval: str | None = Field(None, description="path to a [low, high] interval, if not beside the value")
    percent: bool = True


class TeamRun(BaseModel):
    """What the team ran under this ID and the headline numbers they recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ran: str
    headlines: list[TeamHeadline] = Field(default_factory=list)


class DiagnosticDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str
    description: str = ""
    injection_model: Literal["IM1", "IM2"] | None = None
    steps: list[StepDefinition]
    presets: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    team: TeamRun | None = None

    @model_validator(mode="after")
    def _steps(self) -> DiagnosticDefinition:
        names = [s.name for s in self.steps]
        if not names:
            raise ValueError("steps: a diagnostic needs at least one step")
        for name in names:
            if not STEP_NAME.match(name):
                raise ValueError(
                    f"steps: {name!r} is not a step name (lowercase letters, digits, _; 48 at most)"
                )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"steps: names repeat: {repeated}")
        if FULL in self.presets:
            raise ValueError("presets: 'full' is the definition as written; it cannot be redefined")
        if self.team is not None:
            strays = sorted({h.step for h in self.team.headlines} - set(names))
            if strays:
                raise ValueError(f"team.headlines: {strays} name no step of this definition")
        checks = {s.check for s in self.steps}
        for preset, targets in self.presets.items():
            unknown = sorted(set(targets) - set(names) - checks)
            if unknown:
                raise ValueError(
                    f"presets.{preset}: {unknown} name neither a step nor a check of this definition"
                )
        return self


@dataclass(frozen=True)
class ResolvedStep:
    name: str
    check: str
    params: CheckParams
    description: str

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "check": self.check, "params": self.params.model_dump(mode="json")}

    @property
    def sha256(self) -> str:
        return canonical_sha256(self.snapshot())


def load_diagnostic(name_or_path: str | Path) -> DiagnosticDefinition:
    path, raw = read_config("diagnostics", name_or_path, what="diagnostic", error=DiagnosticError)
    definition = validated(DiagnosticDefinition, raw, error=DiagnosticError, source=str(path))
    resolve(definition, FULL, source=str(path))  # every check known, every parameter valid
    for preset in definition.presets:
        resolve(definition, preset, source=str(path))
    return definition


def resolve(
    definition: DiagnosticDefinition, preset: str = FULL, only: list[str] | None = None, *, source: str = ""
) -> list[ResolvedStep]:
    """The steps to run, parameters validated by each check's model (errors name the step
    and the key), with the preset's overrides applied; ``only``: these steps, in order."""
    where = source or definition.id
    if preset != FULL and preset not in definition.presets:
        known = ", ".join([FULL, *definition.presets])
        raise DiagnosticError(f"{where}: unknown preset {preset!r}; this definition has {known}")
    names = [s.name for s in definition.steps]
    for name in only or []:
        if name not in names:
            raise DiagnosticError(f"{where}: no step {name!r}; steps are {', '.join(names)}")
    overrides = definition.presets.get(preset, {})
    resolved = []
    for index, step in enumerate(definition.steps):
        check = get_check(step.check)
        params = {**step.params, **overrides.get(step.check, {}), **overrides.get(step.name, {})}
        model = validated(
            check.params,
            params,
            error=DiagnosticError,
            source=where,
            prefix=f"steps[{index}] ({step.name}).params.",
        )
        if not only or step.name in only:
            resolved.append(ResolvedStep(step.name, step.check, model, step.description or check.description))
    return resolved
