"""Running a diagnostic: its steps in order, each into its own directory, then the run's
``metrics.json`` (every step's metrics, nested by step name: the one file the registry reads)
and ``report.md``.

Results directory::

    definition.json   what ran: ID, preset, every step's check and validated parameters, the
                      model (bundle hash), the hosts (shard hash), lenscal version, status
    <step>/           the step's tables, PNGs, metrics.json and step.json (done, hash, headline)
    metrics.json      {step: that step's metrics} for every finished step
    report.md         the decisive numbers, key tables and figures, step by step

A step whose step.json says it finished with the same parameters is reused, so a run killed
part-way continues where it stopped (grid steps also resume inside the step). A directory
holds one definition: another one is refused unless ``restart``."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenscal import __version__
from lenscal.diagnostics.base import Context, DiagnosticError, get_check
from lenscal.diagnostics.config import FULL, DiagnosticDefinition, ResolvedStep, resolve
from lenscal.diagnostics.report import TABLE_FILE, write_report
from lenscal.fsutil import sha256_file
from lenscal.mock.catalog import is_mock
from lenscal.plotting import figure_marks
from lenscal.workspace import canonical_sha256, claim, clear_directory, is_bookkeeping, run_lock, write_json

log = logging.getLogger("lenscal.diagnostics")
STEP_FILE = "step.json"


@dataclass
class DiagnosticResult:
    out: Path
    metrics: dict[str, Any]
    ran: list[str]
    reused: list[str]


def run_diagnostic(
    definition: DiagnosticDefinition,
    ctx: Context,
    out: str | Path,
    *,
    preset: str = FULL,
    only: list[str] | None = None,
    restart: bool = False,
    registry: Any = None,
) -> DiagnosticResult:
    """Run (or resume) the definition's steps at ``preset`` into ``out``. ``registry``: where
    the report reads the team's record of this ID (its note) for the summary table."""
    out = Path(out)
    every_step = resolve(definition, preset)
    chosen = resolve(definition, preset, only)
    identity, digest = run_identity(definition, ctx, preset)
    with run_lock(out, f"diagnostic run ({definition.id})"):
        if restart:
            clear_directory(out)
        claim(out, "definition.json", digest, what="diagnostic run", error=DiagnosticError)
        return _run_claimed(definition, ctx, out, preset, identity, digest, every_step, chosen, registry)


def _run_claimed(
    definition: DiagnosticDefinition,
    ctx: Context,
    out: Path,
    preset: str,
    identity: dict[str, Any],
    digest: str,
    every_step: list[ResolvedStep],
    chosen: list[ResolvedStep],
    registry: Any,
) -> DiagnosticResult:
    info = ctx.scorer.model_info(ctx.model)[0]
    meta = {
        "format": "lenscal-diagnostic/1",
        **identity,
        "definition_sha256": digest,
        "description": definition.description,
        "injection_model": definition.injection_model,
        "model": {
            **identity["model"],
            "name": info.name,
            "architecture": info.architecture,
            "engine": info.engine,
            "device": info.device,
            "preprocess": json.loads(info.spec.to_json()),
        },
        "hosts": {**identity["hosts"], "shards": str(ctx.hosts.directory)},
        "mock_hosts": is_mock(ctx.hosts.manifest()["galaxy_id"]),
        "lenscal_version": __version__,
        "status": "running",
    }
    write_json(out / "definition.json", meta)
    ctx.root = out
    ctx.preset = preset
    ctx.steps = {s.name: out / s.name for s in every_step if _finished(out / s.name, s)}
    ran, reused = [], []
    with figure_marks(demo=preset == "demo", mock=meta["mock_hosts"]):  # every step's figures
        try:
            for step in chosen:
                if step.name in ctx.steps:
                    log.info("%s: step %s already done, reused", definition.id, step.name)
                    reused.append(step.name)
                    continue
                _run_step(ctx, step, out / step.name)
                ctx.steps[step.name] = out / step.name
                ran.append(step.name)
        except BaseException as exc:
            meta.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
            write_json(out / "definition.json", meta)
            raise
        metrics = {
            s.name: json.loads((out / s.name / "metrics.json").read_text())
            for s in every_step
            if s.name in ctx.steps
        }
        write_json(out / "metrics.json", metrics)
        complete = all(s.name in ctx.steps for s in every_step)
        meta["status"] = "complete" if complete else "partial"
        meta["missing_steps"] = [s.name for s in every_step if s.name not in ctx.steps]
        write_json(out / "definition.json", meta)
        write_report(out, meta, every_step, definition.team, team_notes(registry, definition.id))
    return DiagnosticResult(out, metrics, ran, reused)


def team_notes(registry: Any, definition_id: str) -> str | None:
    """The registry's note on ``definition_id`` when it holds the team's record of it (one
    lenscal did not make: no run identity in its config), else None."""
    if registry is None or not registry.exists(definition_id):
        return None
    record = registry.get(definition_id)
    made_here = isinstance(record.config, dict) and "identity" in record.config
    return None if made_here else " ".join([record.notes or "", *map(str, record.metrics.values())])


def run_identity(
    definition: DiagnosticDefinition, ctx: Context, preset: str = FULL
) -> tuple[dict[str, Any], str]:
    """What makes two runs the same run (the definition's resolved steps at the preset, the
    model, the hosts) and its SHA-256: a results directory holds runs of one identity."""
    info = ctx.scorer.model_info(ctx.model)[0]
    identity: dict[str, Any] = {
        "id": definition.id,
        "preset": preset,
        "steps": [s.snapshot() for s in resolve(definition, preset)],
        "model": {
            "model_id": info.model_id,
            "bundle_sha256": info.bundle_sha256,
            "weights_sha256": info.weights_sha256,
        },
        "hosts": {"shards_sha256": ctx.hosts.index.source_sha256},
    }
    return identity, canonical_sha256(identity)


def _run_step(ctx: Context, step: ResolvedStep, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STEP_FILE).unlink(missing_ok=True)
    check = get_check(step.check)
    log.info("step %s (%s)", step.name, step.check)
    started = time.perf_counter()
    outcome = check.run(ctx, step.params, directory)
    seconds = time.perf_counter() - started
    write_json(directory / "metrics.json", outcome.metrics)
    if outcome.table is not None:
        outcome.table.to_csv(directory / TABLE_FILE, index=False)
    figures = [str(Path(f).relative_to(directory)) for f in outcome.figures if Path(f).is_file()]
    files = {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != STEP_FILE and not is_bookkeeping(p)
    }
    write_json(
        directory / STEP_FILE,
        {
            **step.snapshot(),
            "sha256": step.sha256,
            "status": "done",
            "description": step.description,
            "ran": outcome.caption or default_caption(step),
            "headline": outcome.headline,
            "figures": figures,
            "seconds": round(seconds, 3),
            "files": files,
        },
    )


def default_caption(step: ResolvedStep) -> str:
    """What ran, for a check that gives no caption of its own: its one-line description and
    the scalar parameters it ran with."""
    check = get_check(step.check)
    values = step.params.model_dump(mode="json")
    shown = ", ".join(
        f"{k} {v}" for k, v in values.items() if isinstance(v, (int, float, str)) and v is not None
    )
    return f"{check.description.rstrip('.')}" + (f" ({shown})" if shown else "")


def _finished(directory: Path, step: ResolvedStep) -> bool:
    path = directory / STEP_FILE
    if not path.is_file():
        return False
    try:
        done = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    if not (done.get("status") == "done" and done.get("sha256") == step.sha256):
        return False
    # The step's files are verified, not trusted: one changed, truncated or removed since the
    # step finished (or a step.json from before files were recorded) runs the step again.
    files = done.get("files")
    if not isinstance(files, dict):
        return False
    for name, digest in files.items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != digest:
            log.warning("%s: changed since step %s finished; running the step again", path, step.name)
            return False
    return True


def record_details(
    definition: DiagnosticDefinition, ctx: Context, registry: Any, run_id: str | None, preset: str
) -> dict[str, Any]:
    """The keyword arguments of lenscal.registry.runs.recorded_run for this run: its ID (by
    default the definition's for the full preset, ``<ID>_<YYYYMMDD>_<preset>`` otherwise),
    kind (a D<NN> diagnostic or an E<NN>-... evaluation), config (the resolved steps and
    preset), identity (checkpoint, preset, hosts: an existing record of another run is
    refused) and lineage (the checkpoint, the injection model, created if missing)."""
    from lenscal.registry.identity import RunIdentity, default_run_id
    from lenscal.registry.ids import RegistryError, kind_of
    from lenscal.registry.runs import ensure_injection_model

    run_id = run_id or default_run_id(definition.id, preset)
    kind = kind_of(run_id)
    if kind not in ("diagnostic", "evaluation"):
        raise RegistryError(f"a diagnostic run is recorded as D<NN> or E<NN>-<suffix>, not {run_id!r}")
    info = ctx.scorer.model_info(ctx.model)[0]
    identity = RunIdentity(
        checkpoint=info.model_id,
        preset=preset,
        hosts=ctx.hosts.index.source_sha256,
        bundle_sha256=info.bundle_sha256,
        injection_model=definition.injection_model,
    )
    if definition.injection_model:
        ensure_injection_model(registry, definition.injection_model)
    config = {
        "definition": definition.model_dump(mode="json"),
        "preset": preset,
        "steps": [s.snapshot() for s in resolve(definition, preset)],
    }
    return {
        "run_id": run_id,
        "kind": kind,
        "config": config,
        "parents": identity.parents(),
        "identity": identity,
        "description": definition.description,
    }
