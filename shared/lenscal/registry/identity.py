"""Which run a record holds: the checkpoint it scored with, the preset it ran at and the host
set it drew from. A record holds one run: a run that differs in any of these is refused
under that ID, naming what differs, so a demo on mock data with another model can never be
filed under the team's ``D05`` (whose parent is gen4 and whose note says 3.41 %). Records
imported from the team's markdown carry no identity of their own: they stand for the
team's full runs, with the checkpoint their lineage names and a host set lenscal never saw.

Runs at a preset other than ``full`` are recorded by default as ``<ID>_<YYYYMMDD>_<preset>``
(``D05_20261202_demo``), the team's results-directory convention, never under ``<ID>``."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lenscal.home import FULL
from lenscal.registry.ids import RegistryError
from lenscal.registry.records import Record
from lenscal.workspace import run_name


@dataclass(frozen=True)
class RunIdentity:
    checkpoint: str  # the registry ID (model_id) of the scoring checkpoint
    preset: str = FULL
    hosts: str | None = None  # SHA-256 of the shard index the hosts came from
    bundle_sha256: str | None = None
    injection_model: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def parents(self) -> list[tuple[str, str]]:
        """The run's lineage: its checkpoint and, when it injects, its injection model."""
        found = [(self.checkpoint, "checkpoint")]
        if self.injection_model:
            found.append((self.injection_model, "injection_model"))
        return found


def default_run_id(base_id: str, preset: str, date: dt.date | None = None) -> str:
    """``base_id`` for the full preset, else ``<base_id>_<YYYYMMDD>_<preset>``."""
    return base_id if preset == FULL else run_name(base_id, preset, date)


def identity_of_results(directory: str | Path) -> RunIdentity | None:
    """The identity a results directory records: a diagnostic's definition.json or a grid's
    meta.json; None for other directories (nothing to check)."""
    directory = Path(directory)
    definition, meta = directory / "definition.json", directory / "meta.json"
    try:
        if definition.is_file():
            raw = json.loads(definition.read_text())
            return RunIdentity(
                checkpoint=str(raw["model"]["model_id"]),
                preset=str(raw.get("preset", FULL)),
                hosts=raw.get("hosts", {}).get("shards_sha256"),
                bundle_sha256=raw["model"].get("bundle_sha256"),
                injection_model=raw.get("injection_model"),
            )
        if meta.is_file():
            raw = json.loads(meta.read_text())
            if str(raw.get("format", "")).startswith("lenscal-grid/"):
                return RunIdentity(
                    checkpoint=str(raw["checkpoint"]["model_id"]),
                    hosts=raw["definition"]["hosts"]["shards_sha256"],
                    bundle_sha256=raw["checkpoint"].get("bundle_sha256"),
                    injection_model=raw["definition"].get("injection_model"),
                )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{directory}: its run description is unreadable ({exc})") from None
    return None


def differences(record: Record, run: RunIdentity) -> list[str]:
    """What differs between the run a record holds and ``run`` (empty: the same run)."""
    stored = (record.config or {}).get("identity") if isinstance(record.config, dict) else None
    found = []
    checkpoints = sorted(p["id"] for p in record.parents if p["role"] == "checkpoint")
    if checkpoints and checkpoints != [run.checkpoint]:
        found.append(f"checkpoint {', '.join(checkpoints)} vs {run.checkpoint}")
    if stored is None:  # an imported (team) record, or one lenscal made before identities
        if run.preset != FULL:
            found.append(f"preset full (the record's run) vs {run.preset}")
        if run.hosts is not None:
            found.append(f"host set not recorded on {record.id} vs shards {run.hosts[:12]}")
        return found
    if stored.get("preset", FULL) != run.preset:
        found.append(f"preset {stored.get('preset', FULL)} vs {run.preset}")
    if stored.get("hosts") != run.hosts:
        found.append(f"host set {str(stored.get('hosts'))[:12]} vs {str(run.hosts)[:12]}")
    if stored.get("bundle_sha256") and run.bundle_sha256 and stored["bundle_sha256"] != run.bundle_sha256:
        found.append(f"checkpoint bundle {stored['bundle_sha256'][:12]} vs {run.bundle_sha256[:12]}")
    return found


def refuse_other_run(record: Record, run: RunIdentity) -> None:
    """Raise (exit 2 at the CLI) when ``record`` holds another run than ``run``."""
    found = differences(record, run)
    if found:
        suggestion = default_run_id(record.id.split("_")[0], run.preset if run.preset != FULL else "rerun")
        raise RegistryError(
            f"{record.id} records another run ({'; '.join(found)}); record this one under a new ID "
            f"(--run-id {suggestion}) and {record.id} stays as it is"
        )
