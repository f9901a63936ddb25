"""The registry store: records, lineage, metrics from files, artifacts with hashes.
The database itself (location, engine, migrations) is lenscal.registry.db; verification
and diffs are lenscal.registry.audit."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lenscal.fsutil import sha256_file
from lenscal.registry import audit
from lenscal.registry.db import default_url, make_engine, make_read_only_engine, migrate, schema_is_current
from lenscal.registry.ids import KINDS, RegistryError, check_id, check_kind, check_status, kind_of
from lenscal.registry.records import (
    Diff,
    Record,
    VerifyProblem,
    detect_git_commit,
    flatten_numbers,
)
from lenscal.registry.schema import (
    AliasRow,
    ArtifactRow,
    DocumentRow,
    MetricRow,
    ParentRow,
    RecordRow,
    utcnow,
)
from lenscal.workspace import canonical_json, is_bookkeeping, sha256_text

PARENT_ROLES = ("checkpoint", "injection_model", "grid", "init_from", "config", "data", "other")


class Registry:
    """The single source of truth for runs. All methods are safe across processes."""

    def __init__(self, url: str | None = None, *, read_only: bool = False) -> None:
        """``read_only``: open without writing anything, not even a schema upgrade (an
        out-of-date database is refused, saying how to upgrade it); writes then fail."""
        self.url = url or default_url()
        self.read_only = read_only
        if read_only:
            self.engine = make_read_only_engine(self.url)
            if not schema_is_current(self.engine):
                raise RegistryError(
                    f"the registry at {self.url_for_humans} has an older schema; any write "
                    "(e.g. `lenscal registry list`) upgrades it"
                )
        else:
            self.engine = make_engine(self.url)
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # --- writing -------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        run_id: str,
        *,
        status: str | None = None,
        parents: Iterable[tuple[str, str]] = (),
        metrics: Mapping[str, float | str] | None = None,
        metric_source: str = "cli",
        config: Any = None,
        git_commit: str | None = None,
        description: str = "",
        notes: str = "",
        results_path: str | None = None,
        run_date: dt.date | None = None,
        extra: Mapping[str, Any] | None = None,
        section: str | None = None,
        position: int | None = None,
    ) -> Record:
        """Create a record. ``parents``: (parent ID or alias, role) pairs; parents must exist."""
        check_id(kind, run_id)
        status = check_status(status or KINDS[kind].default_status)
        if status == "Invalidated":
            raise RegistryError("a record is invalidated with `invalidate`, not created invalidated")
        config_json = None if config is None else canonical_json(config)
        try:
            with self.transaction() as s:
                row = RecordRow(
                    id=run_id,
                    kind=kind,
                    status=status,
                    description=description,
                    notes=notes,
                    run_date=run_date,
                    results_path=results_path,
                    config_json=config_json,
                    config_sha256=None if config_json is None else sha256_text(config_json),
                    git_commit=git_commit if git_commit is not None else detect_git_commit(),
                    section=section,
                    position=position if position is not None else _next_position(s),
                    extra_json=canonical_json(dict(extra or {})),
                )
                s.add(row)
                s.flush()
                for parent, role in parents:
                    self._link(s, row, parent, role)
                for name, value in (metrics or {}).items():
                    _put_metric(s, row, name, value, metric_source, None)
        except IntegrityError as exc:
            raise RegistryError(f"record {run_id!r} already exists") from exc
        return self.get(run_id)

    def set_parents(self, run_id: str, parents: Iterable[tuple[str, str]]) -> Record:
        """Replace the record's lineage with ``parents`` (ID or alias, role): a run's lineage
        comes from the run itself, never from what the record held before."""
        wanted = list(parents)
        with self.transaction() as s:
            row = self._row(s, run_id, lock=True)
            row.parents.clear()
            s.flush()
            for parent, role in wanted:
                self._link(s, row, parent, role)
        return self.get(run_id)

    def add_parent(self, run_id: str, parent: str, role: str) -> Record:
        with self.transaction() as s:
            self._link(s, self._row(s, run_id, lock=True), parent, role)
        return self.get(run_id)

    def set_status(self, run_id: str, status: str) -> Record:
        status = check_status(status)
        if status == "Invalidated":
            raise RegistryError("use `invalidate` (it needs a reason) to invalidate a record")
        with self.transaction() as s:
            row = self._row(s, run_id, lock=True)
            if row.status == "Invalidated":
                raise RegistryError(
                    f"{row.id} is invalidated ({row.invalidated_reason}); its status is final"
                )
            row.status = status
        return self.get(run_id)

    def update(self, run_id: str, **fields: Any) -> Record:
        """Change free fields: description, notes, results_path, run_date, git_commit, config, extra."""
        allowed = {
            "description",
            "notes",
            "results_path",
            "run_date",
            "git_commit",
            "config",
            "extra",
            "section",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise RegistryError(f"cannot update {sorted(unknown)}; updatable fields: {sorted(allowed)}")
        with self.transaction() as s:
            row = self._row(s, run_id, lock=True)
            for key, value in fields.items():
                if key == "config":
                    row.config_json = canonical_json(value)
                    row.config_sha256 = sha256_text(row.config_json)
                elif key == "extra":
                    row.extra_json = canonical_json({**json.loads(row.extra_json), **value})
                else:
                    setattr(row, key, value)
        return self.get(run_id)

    def set_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float | str],
        *,
        source: str = "cli",
        source_sha256: str | None = None,
    ) -> Record:
        with self.transaction() as s:
            row = self._row(s, run_id, lock=True)
            for name, value in metrics.items():
                _put_metric(s, row, name, value, source, source_sha256)
        return self.get(run_id)

    def add_artifacts(
        self, run_id: str, paths: Iterable[str | os.PathLike[str]], role: str = "output"
    ) -> Record:
        hashed = []
        for p in paths:
            path = Path(p).resolve()
            if not path.is_file():
                raise RegistryError(f"artifact {path} does not exist")
            hashed.append((str(path), sha256_file(path), path.stat().st_size))
        with self.transaction() as s:
            row = self._row(s, run_id, lock=True)
            existing = {a.path: a for a in row.artifacts}
            for path_str, digest, size in hashed:
                if path_str in existing:
                    existing[path_str].sha256, existing[path_str].size_bytes = digest, size
                else:
                    row.artifacts.append(
                        ArtifactRow(path=path_str, sha256=digest, size_bytes=size, role=role)
                    )
        return self.get(run_id)

    def record_results(
        self,
        run_id: str,
        results_dir: str | os.PathLike[str],
        metrics_file: str = "metrics.json",
        artifacts: Iterable[str | os.PathLike[str]] | None = None,
    ) -> Record:
        """Read the run's metrics from ``results_dir/metrics_file`` (numbers only, nested keys
        joined with '.'), hash the run's files as artifacts (every file in the directory, or
        ``artifacts`` when given), set results_path."""
        directory = Path(results_dir).resolve()
        metrics_path = directory / metrics_file
        if not metrics_path.is_file():
            raise RegistryError(
                f"{metrics_path}: no metrics file; a run's metrics must come from its results"
            )
        try:
            raw = json.loads(metrics_path.read_text())
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{metrics_path}: not valid JSON ({exc})") from exc
        numbers = flatten_numbers(raw)
        if not numbers:
            raise RegistryError(f"{metrics_path}: holds no numeric metrics")
        self.get(run_id)  # fail before hashing if the record does not exist
        if artifacts is None:
            files = sorted(p for p in directory.rglob("*") if p.is_file() and not is_bookkeeping(p))
        else:
            files = sorted({Path(a).resolve() for a in artifacts} | {metrics_path})
        self.add_artifacts(run_id, files)
        self.update(run_id, results_path=str(directory))
        return self.set_metrics(
            run_id, numbers, source=str(metrics_path), source_sha256=sha256_file(metrics_path)
        )

    def invalidate(self, ref: str, reason: str, superseded_by: str | None = None) -> Record:
        if not reason.strip():
            raise RegistryError("invalidating needs a reason")
        with self.transaction() as s:
            row = self._row(s, ref, lock=True)
            if superseded_by is not None:
                successor = self._row(s, superseded_by)
                if successor.id == row.id:
                    raise RegistryError(f"{row.id} cannot supersede itself")
                row.superseded_by = successor.id
            if row.status != "Invalidated":
                row.status_before_invalidation = row.status
            row.status = "Invalidated"
            row.invalidated_reason = reason
            row.invalidated_at = utcnow()
            run_id = row.id
        return self.get(run_id)

    def alias(self, name: str, ref: str) -> Record:
        if kind_of(name) is not None:
            raise RegistryError(
                f"alias {name!r} looks like a record ID; choose a name such as 'current-best'"
            )
        with self.transaction() as s:
            row = self._row(s, ref)
            existing = s.get(AliasRow, name)
            if existing is None:
                s.add(AliasRow(name=name, record_id=row.id))
            else:
                existing.record_id = row.id
            run_id = row.id
        return self.get(run_id)

    def set_document(self, key: str, text: str) -> None:
        with self.transaction() as s:
            doc = s.get(DocumentRow, key)
            if doc is None:
                s.add(DocumentRow(key=key, text=text))
            else:
                doc.text = text

    # --- reading -------------------------------------------------------------------------

    def document(self, key: str) -> str | None:
        with self.transaction() as s:
            doc = s.get(DocumentRow, key)
            return None if doc is None else doc.text

    def resolve(self, ref: str) -> str:
        with self.transaction() as s:
            return self._row(s, ref).id

    def exists(self, ref: str) -> bool:
        try:
            self.resolve(ref)
        except RegistryError:
            return False
        return True

    def get(self, ref: str) -> Record:
        with self.transaction() as s:
            row = self._row(s, ref)
            return self._snapshot(s, row, self._lineage(s))

    def records(
        self, kind: str | None = None, status: str | None = None, text: str | None = None
    ) -> list[Record]:
        if kind is not None:
            check_kind(kind)
        if status is not None:
            status = check_status(status)
        with self.transaction() as s:
            query = select(RecordRow).order_by(RecordRow.position, RecordRow.id)
            if kind is not None:
                query = query.where(RecordRow.kind == kind)
            if status is not None:
                query = query.where(RecordRow.status == status)
            lineage = self._lineage(s)
            records = [self._snapshot(s, r, lineage) for r in s.scalars(query)]
        if text:
            needle = text.lower()
            records = [r for r in records if needle in canonical_json(r.to_json()).lower()]
        return records

    def diff(self, a: str, b: str) -> Diff:
        return audit.diff(self.get(a), self.get(b))

    def verify(self) -> list[VerifyProblem]:
        """Re-hash every artifact; re-read every metrics file and compare the numbers."""
        with self.transaction() as s:
            artifacts, metrics = audit.recorded_files(s)
        return audit.verify(artifacts, metrics)

    # --- internals -----------------------------------------------------------------------

    def _row(self, s: Session, ref: str, *, lock: bool = False) -> RecordRow:
        query = select(RecordRow).where(RecordRow.id == ref)
        if lock:
            query = query.with_for_update()
        row = s.scalars(query).first()
        if row is None:
            alias = s.get(AliasRow, ref)
            if alias is not None:
                return self._row(s, alias.record_id, lock=lock)
            raise RegistryError(f"no record or alias {ref!r} in the registry ({self.url_for_humans})")
        return row

    @property
    def url_for_humans(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    def _link(self, s: Session, row: RecordRow, parent: str, role: str) -> None:
        if role not in PARENT_ROLES:
            raise RegistryError(f"unknown parent role {role!r}; roles: {', '.join(PARENT_ROLES)}")
        try:
            parent_row = self._row(s, parent)
        except RegistryError:
            raise RegistryError(f"parent {parent!r} ({role}) of {row.id} is not in the registry") from None
        if parent_row.id == row.id:
            raise RegistryError(f"{row.id} cannot be its own parent")
        if row.id in self._ancestors(self._lineage(s), parent_row.id):
            raise RegistryError(f"linking {row.id} to {parent_row.id} would make a cycle")
        if not any(p.parent_id == parent_row.id and p.role == role for p in row.parents):
            row.parents.append(ParentRow(parent_id=parent_row.id, role=role))

    @staticmethod
    def _lineage(s: Session) -> dict[str, list[tuple[str, str]]]:
        edges: dict[str, list[tuple[str, str]]] = {}
        for child, parent, role in s.execute(select(ParentRow.child_id, ParentRow.parent_id, ParentRow.role)):
            edges.setdefault(child, []).append((parent, role))
        return edges

    @staticmethod
    def _ancestors(edges: dict[str, list[tuple[str, str]]], run_id: str) -> list[str]:
        seen: list[str] = []
        stack = [p for p, _ in edges.get(run_id, [])]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.append(current)
                stack.extend(p for p, _ in edges.get(current, []))
        return seen

    def _snapshot(self, s: Session, row: RecordRow, edges: dict[str, list[tuple[str, str]]]) -> Record:
        ancestors = self._ancestors(edges, row.id)
        upstream: list[dict[str, str]] = []
        if ancestors:
            bad = s.execute(
                select(RecordRow.id, RecordRow.invalidated_reason).where(
                    RecordRow.id.in_(ancestors), RecordRow.status == "Invalidated"
                )
            )
            upstream = [{"id": i, "reason": r or ""} for i, r in bad]
        aliases = sorted(a.name for a in s.scalars(select(AliasRow).where(AliasRow.record_id == row.id)))
        return Record(
            id=row.id,
            kind=row.kind,
            status=row.status,
            description=row.description,
            notes=row.notes,
            run_date=None if row.run_date is None else row.run_date.isoformat(),
            results_path=row.results_path,
            config=None if row.config_json is None else json.loads(row.config_json),
            config_sha256=row.config_sha256,
            git_commit=row.git_commit,
            superseded_by=row.superseded_by,
            invalidated=row.status == "Invalidated",
            invalidated_reason=row.invalidated_reason,
            status_before_invalidation=row.status_before_invalidation,
            upstream_invalid=upstream,
            parents=[{"id": p.parent_id, "role": p.role} for p in row.parents],
            metrics={m.name: (m.value if m.value is not None else (m.text or "")) for m in row.metrics},
            metric_sources={m.name: m.source for m in row.metrics},
            artifacts=[
                {"path": a.path, "sha256": a.sha256, "bytes": a.size_bytes, "role": a.role}
                for a in row.artifacts
            ],
            aliases=aliases,
            extra=json.loads(row.extra_json),
            section=row.section,
            position=row.position,
            created_at=row.created_at.isoformat(),
            updated_at=row.updated_at.isoformat(),
        )


def _put_metric(
    s: Session, row: RecordRow, name: str, value: float | str, source: str, source_sha256: str | None
) -> None:
    existing = next((m for m in row.metrics if m.name == name), None)
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    text = None if number is not None else str(value)
    if number is not None and not math.isfinite(number):
        raise RegistryError(f"metric {name}={value} is not finite")
    if existing is None:
        row.metrics.append(
            MetricRow(name=name, value=number, text=text, source=source, source_sha256=source_sha256)
        )
    else:
        existing.value, existing.text, existing.source, existing.source_sha256 = (
            number,
            text,
            source,
            source_sha256,
        )


def _next_position(s: Session) -> int:
    last = s.scalars(select(RecordRow.position).order_by(RecordRow.position.desc()).limit(1)).first()
    return 0 if last is None else last + 1
