"""What the registry hands out (read-only snapshots, verification problems, differences) and
the value helpers its tables rely on (canonical JSON, flattened metrics, git commit)."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Record:
    """A read-only snapshot of one registry record."""

    id: str
    kind: str
    status: str
    description: str
    notes: str
    run_date: str | None
    results_path: str | None
    config: Any
    config_sha256: str | None
    git_commit: str | None
    superseded_by: str | None
    invalidated: bool
    invalidated_reason: str | None
    status_before_invalidation: str | None
    upstream_invalid: list[dict[str, str]]
    parents: list[dict[str, str]]
    metrics: dict[str, float | str]
    metric_sources: dict[str, str]
    artifacts: list[dict[str, Any]]
    aliases: list[str]
    extra: dict[str, Any]
    section: str | None
    position: int
    created_at: str
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyProblem:
    record_id: str
    path: str
    problem: str  # "missing", "changed", "metric drift: ..."


@dataclass
class Diff:
    a: str
    b: str
    config: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    metrics: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def detect_git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the git checkout at cwd, with '-dirty' when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def flatten_numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as {"a.b": x}; strings, lists and booleans are skipped."""
    out: dict[str, float] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.update(flatten_numbers(item, f"{prefix}{key}."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        out[prefix[:-1]] = float(value)
    return out


def flatten_any(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.update(flatten_any(item, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = value
    return out
