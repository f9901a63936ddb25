"""Recording a run, in one place: training, evaluation, grids, diagnostics and flows all
use ``recorded_run``, so every record goes Running -> done / Failed the same way, keeps
its config snapshot and lineage, and takes its metrics only from the files the run wrote.

    with recorded_run(registry, "E04-eval", kind="evaluation", results_dir=out,
                      parents=[("gen5b", "checkpoint")]):
        ... write out/metrics.json ...
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lenscal.registry.identity import RunIdentity, identity_of_results, refuse_other_run
from lenscal.registry.ids import RegistryError, check_id
from lenscal.registry.store import Registry

log = logging.getLogger("lenscal.registry")


def ensure_injection_model(registry: Registry, name: str) -> None:
    """Injection models (IM1, IM2) are defined by lenscal.injection.hosts; a run that uses
    one names it as a parent, so its record exists before the first run that does."""
    if not registry.exists(name):
        registry.add("injection_model", name, description="defined by lenscal.injection.hosts")


@contextlib.contextmanager
def recorded_run(
    registry: Registry | None,
    run_id: str | None,
    *,
    kind: str,
    results_dir: str | Path,
    config: Any = None,
    parents: Iterable[tuple[str, str]] = (),
    description: str = "",
    done_status: str = "Complete",
    rerun: bool = True,
    artifacts: Callable[[], Iterable[Path]] | None = None,
    identity: RunIdentity | None = None,
) -> Iterator[str | None]:
    """Record the run ``run_id`` of ``kind`` around the body; yields the run id (None, and
    nothing recorded, when ``registry`` or ``run_id`` is None).

    Start: the ID is checked against its kind's rule; the record is created (or reopened)
    as Running with ``config`` and the ``parents`` (ID, role) found in the registry (others
    are listed in the record's extra ``unregistered_parents``). ``rerun=False`` refuses a
    record already at ``done_status``. With ``identity`` (checkpoint, preset, hosts), an
    existing record holding another run is refused (lenscal.registry.identity), the
    identity is kept in the config, and a reopened record's lineage is replaced by the run's.
    Failure: status Failed, the error in the notes, the exception re-raised.
    Success: metrics read from ``results_dir/metrics.json``, the files of ``artifacts()``
    (default: every file in ``results_dir``) hashed, status ``done_status``.
    """
    if registry is None or run_id is None:
        yield None
        return
    check_id(kind, run_id)
    if identity is not None:
        kept = config if isinstance(config, dict) else ({} if config is None else {"config": config})
        config = {
            **kept,
            "identity": identity.to_json(),
        }
    wanted = list(parents)
    known = [(p, role) for p, role in wanted if registry.exists(p)]
    missing = [f"{role}:{p}" for p, role in wanted if (p, role) not in known]
    if registry.exists(run_id):
        record = registry.get(run_id)
        if record.kind != kind:
            raise RegistryError(f"{run_id} is a {record.kind} record, not a {kind} run")
        if record.status == done_status and not rerun:
            raise RegistryError(f"registry: {run_id} is already {done_status}; give another run ID")
        if identity is not None:
            refuse_other_run(record, identity)
        registry.set_status(run_id, "Running")
        if config is not None:
            registry.update(run_id, config=config)
        if identity is not None:
            registry.set_parents(run_id, known)
        else:
            for parent, role in known:
                registry.add_parent(run_id, parent, role)
    else:
        registry.add(kind, run_id, status="Running", config=config, parents=known, description=description)
    if missing:
        registry.update(run_id, extra={"unregistered_parents": missing})
        log.warning("%s: parents not in the registry: %s", run_id, ", ".join(missing))
    try:
        yield run_id
    except BaseException as exc:
        registry.set_status(run_id, "Failed")
        registry.update(run_id, notes=f"failed: {type(exc).__name__}: {exc}"[:500])
        raise
    files = None if artifacts is None else [Path(a) for a in artifacts() if Path(a).exists()]
    registry.record_results(run_id, results_dir, artifacts=files)
    registry.set_status(run_id, done_status)


def record_results_of(registry: Registry, run_id: str, results_dir: str | Path) -> None:
    """``registry record-results``: the run's metrics and files into ``run_id``, after
    checking the record holds this run (a diagnostic or grid results directory says which
    checkpoint, preset and hosts it used); the record's lineage becomes the run's."""
    record = registry.get(run_id)
    identity = identity_of_results(results_dir)
    if identity is not None:
        refuse_other_run(record, identity)
        known = [(p, role) for p, role in identity.parents() if registry.exists(p)]
        registry.set_parents(run_id, known)
        config = record.config if isinstance(record.config, dict) else {}
        registry.update(run_id, config={**config, "identity": identity.to_json()})
    registry.record_results(run_id, results_dir)
