"""What every diagnostic check shares: the registry of checks (name -> parameters model and
function), the context a check runs in, and its outcome.

A check is a plain function ``run(ctx, params, out) -> Outcome``: it reads cutouts through
``ctx.hosts``, scores through ``ctx.scorer`` and injects through ``ctx.injector`` (in-process
or gRPC, it cannot tell), writes tables and PNGs into ``out`` and returns the numbers the
run records. The runner writes ``out/metrics.json`` from the outcome; a check never touches
the registry, gRPC or Prefect."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict

from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.injection.api import Injector
from lenscal.scoring.api import Scorer


class DiagnosticError(LenscalError):
    """A diagnostic definition or check that cannot run as asked (the message says why)."""


class CheckParams(BaseModel):
    """Base of every check's parameters: unknown keys are errors (a typo never silently
    falls back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass
class Context:
    hosts: ShardReader
    scorer: Scorer
    injector: Injector
    model: str = ""  # the scorer's model name ("" = its default)
    progress: bool | None = None
    chunk: int = 512  # cutouts per scorer / injector call
    steps: dict[str, Path] = field(default_factory=dict)  # finished steps of this run -> their dirs
    root: Path | None = None  # the run's results directory (relative paths in params: from its parent)
    preset: str = "full"  # the run's preset: a label on its grids' figures (the params are resolved)

    def step_dir(self, name: str, *, wanted_by: str) -> Path:
        """The results directory of an earlier step of this run."""
        if name not in self.steps:
            known = ", ".join(self.steps) or "none yet"
            raise DiagnosticError(f"{wanted_by}: needs step {name!r} to run first (finished: {known})")
        return self.steps[name]


@dataclass
class Outcome:
    metrics: dict[str, Any]  # JSON numbers, strings, booleans (nested dicts allowed)
    headline: list[str] = field(default_factory=list)  # the decisive numbers, one markdown line each
    table: pd.DataFrame | None = None  # the key table, shown in report.md
    figures: list[Path] = field(default_factory=list)
    #: What ran, in a sentence with the counts that actually ran (report.md's caption; a
    #: definition's description states the full run and may not match a preset's).
    caption: str = ""


P = TypeVar("P", bound=CheckParams)
CheckFunction = Callable[[Context, Any, Path], Outcome]


@dataclass(frozen=True)
class Check:
    name: str
    params: type[CheckParams]
    run: CheckFunction
    description: str


CHECKS: dict[str, Check] = {}


def register_check(name: str, params: type[P]) -> Callable[[Callable[[Context, P, Path], Outcome]], Any]:
    """Register ``run(ctx, params, out) -> Outcome`` under ``name``; its docstring's first
    line describes it in listings and reports."""

    def wrap(fn: Callable[[Context, P, Path], Outcome]) -> Callable[[Context, P, Path], Outcome]:
        if name in CHECKS:
            raise DiagnosticError(f"check {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        CHECKS[name] = Check(name, params, fn, doc[0] if doc else name)
        return fn

    return wrap


def get_check(name: str) -> Check:
    # The built-in checks are registered by the package's __init__, which runs before any
    # lenscal.diagnostics module can be imported.
    if name not in CHECKS:
        raise DiagnosticError(f"unknown check {name!r}; known: {', '.join(sorted(CHECKS))}")
    return CHECKS[name]
