"""Auditing the registry against the files it points to (``verify``) and comparing two
records (``diff``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from lenscal.fsutil import sha256_file
from lenscal.registry.records import Diff, Record, VerifyProblem, flatten_any, flatten_numbers
from lenscal.registry.schema import ArtifactRow, MetricRow


def diff(ra: Record, rb: Record) -> Diff:
    """Config, metric, status and lineage differences between two records."""
    result = Diff(ra.id, rb.id)
    ca, cb = flatten_any(ra.config or {}), flatten_any(rb.config or {})
    result.config = {k: (ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)}
    ma, mb = ra.metrics, rb.metrics
    result.metrics = {k: (ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)}
    for name in ("kind", "status", "git_commit", "config_sha256"):
        va, vb = getattr(ra, name), getattr(rb, name)
        if va != vb:
            result.fields[name] = (va, vb)
    pa = sorted((p["role"], p["id"]) for p in ra.parents)
    pb = sorted((p["role"], p["id"]) for p in rb.parents)
    if pa != pb:
        result.fields["parents"] = (pa, pb)
    return result


def recorded_files(s: Session) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, float | None, str]]]:
    """(record, path, sha256) of every artifact and (record, metric, value, source file) of
    every metric read from a file."""
    artifacts = [(a.record_id, a.path, a.sha256) for a in s.scalars(select(ArtifactRow))]
    metrics = [
        (m.record_id, m.name, m.value, m.source)
        for m in s.scalars(select(MetricRow).where(MetricRow.source_sha256.is_not(None)))
    ]
    return artifacts, metrics


def verify(
    artifacts: list[tuple[str, str, str]], metrics: list[tuple[str, str, float | None, str]]
) -> list[VerifyProblem]:
    """Re-hash every artifact; re-read every metrics file and compare the numbers (outside
    any database transaction: hashing large files must not hold the registry's lock)."""
    problems: list[VerifyProblem] = []
    for record_id, path, digest in artifacts:
        p = Path(path)
        if not p.is_file():
            problems.append(VerifyProblem(record_id, path, "missing"))
        elif sha256_file(p) != digest:
            problems.append(VerifyProblem(record_id, path, "changed (SHA-256 differs from the recorded one)"))
    cache: dict[str, dict[str, float] | None] = {}
    for record_id, name, value, source in metrics:
        if source not in cache:
            try:
                cache[source] = flatten_numbers(json.loads(Path(source).read_text()))
            except (OSError, json.JSONDecodeError):
                cache[source] = None
        numbers = cache[source]
        if numbers is None:
            problems.append(VerifyProblem(record_id, source, f"metric {name}: source file unreadable"))
        elif name not in numbers or not _same_number(numbers[name], value):
            problems.append(
                VerifyProblem(
                    record_id,
                    source,
                    f"metric drift: registry {name}={value}, file says {numbers.get(name)}",
                )
            )
    return problems


def _same_number(a: float, b: float | None) -> bool:
    return b is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
