"""What a results directory holds, read for a page: its kind (grid run, diagnostic run, survey
catalogue, training run, or plain folder, told by the file each kind writes), report,
figures, tables and JSON summaries. Reading never writes; an unreadable or missing file is
reported as such, never raised."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

FIGURES = (".png", ".jpg", ".jpeg", ".svg")
TABLES = (".csv", ".parquet")
TEXT = (".md", ".json", ".jsonl", ".txt", ".yaml", ".yml", ".log")
#: How each kind is told: the file it always writes (first match wins).
KIND_MARKERS = (
    ("finders", "finders.json"),  # lenscal selection compare / the selection-compare flow
    ("comparison", "compare.json"),  # lenscal grid compare
    ("grid", "cells.csv"),
    ("survey", "catalog.json"),
    ("diagnostic", "definition.json"),
    ("training", "metrics.jsonl"),
)
#: Figures a kind shows first, in this order (the rest follow by name).
KEY_FIGURES = {
    "grid": ("completeness_heatmaps.png", "completeness_vs_theta_e.png", "completeness_vs_source_mag.png"),
    "training": ("training_curve.png",),
    "survey": ("candidates.png",),
    "finders": ("finders.png", "difference_heatmaps.png"),
    "comparison": ("difference_heatmaps.png",),
}


@dataclass
class Entry:
    name: str
    relative: str  # to the root
    is_dir: bool
    size: int | None
    kind: str | None = None  # a directory's kind


@dataclass
class ResultDir:
    relative: str
    kind: str
    entries: list[Entry]
    figures: list[str]  # names, key figures first
    tables: list[str]
    report: str | None  # report.md text
    summary: dict[str, Any] = field(default_factory=dict)  # meta/metrics/catalog JSON, read
    problems: list[str] = field(default_factory=list)


def kind_of(directory: Path) -> str:
    for kind, marker in KIND_MARKERS:
        if (directory / marker).is_file():
            return kind
    return "folder"


def read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, f"{path.name}: missing"
    except (OSError, ValueError) as exc:
        return None, f"{path.name}: unreadable ({type(exc).__name__})"


def describe(directory: Path, relative: str) -> ResultDir:
    kind = kind_of(directory)
    entries: list[Entry] = []
    for child in sorted(directory.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
        if child.name.startswith("."):
            continue  # locks and temporary files
        rel = f"{relative}/{child.name}" if relative else child.name
        try:
            is_dir = child.is_dir()
            size = None if is_dir else child.stat().st_size
        except OSError:  # a dangling link: listed, shown as missing
            is_dir, size = False, None
        entries.append(Entry(child.name, rel, is_dir, size, kind_of(child) if is_dir else None))
    names = [e.name for e in entries if not e.is_dir]
    key = [f for f in KEY_FIGURES.get(kind, ()) if f in names]
    figures = key + [n for n in names if n.lower().endswith(FIGURES) and n not in key]
    tables = [n for n in names if n.lower().endswith(TABLES)]
    report = None
    problems: list[str] = []
    if "report.md" in names:
        try:
            report = (directory / "report.md").read_text(errors="replace")
        except OSError:
            problems.append("report.md: unreadable")
    summary: dict[str, Any] = {}
    for name in ("meta.json", "metrics.json", "catalog.json", "definition.json", "summary.json"):
        if name in names:
            value, problem = read_json(directory / name)
            if problem:
                problems.append(problem)
            else:
                summary[name] = value
    return ResultDir(relative, kind, entries, figures, tables, report, summary, problems)


def read_table(
    path: Path, *, page: int = 1, per_page: int = 50, sort: str | None = None, descending: bool = False
) -> dict[str, Any]:
    """One page of a CSV or Parquet table: columns, rows (JSON-ready), the total and the
    sort applied (an unknown sort column is ignored and said so)."""
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    note = None
    if sort:
        if sort in frame.columns:
            frame = frame.sort_values(sort, ascending=not descending, kind="stable")
        else:
            note, sort = f"no column {sort!r}: not sorted", None
    total = len(frame)
    per_page = max(1, min(per_page, 500))
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    chunk = frame.iloc[(page - 1) * per_page : page * per_page]
    return {
        **frame_json(chunk),
        "total": total,
        "page": page,
        "pages": pages,
        "per_page": per_page,
        "sort": sort,
        "descending": descending,
        "note": note,
    }


def frame_json(frame: pd.DataFrame) -> dict[str, Any]:
    """Columns and rows of ``frame`` as JSON values (NaN as null, 6 significant digits)."""
    rows = json.loads(frame.to_json(orient="values", double_precision=6))
    return {"columns": [str(c) for c in frame.columns], "rows": rows}


def find_result_dirs(root: Path, kind: str | None = None, limit: int = 2000) -> list[Path]:
    """Result directories under ``root`` (of ``kind`` when given), three levels deep at most
    (results/<run>, results/<group>/<run>, results/selection-compare/<request>/<run>), by name."""
    found: list[Path] = []
    for level in (root.glob("*"), root.glob("*/*"), root.glob("*/*/*")):
        for path in level:
            if len(found) >= limit:
                break
            if not path.is_dir() or path.name.startswith("."):
                continue
            found_kind = kind_of(path)
            if found_kind != "folder" and (kind is None or found_kind == kind):
                found.append(path)
    return sorted(found)
