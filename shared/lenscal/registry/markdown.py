"""The team's EXPERIMENT_REGISTRY.md, read into the registry and rendered back from it.

Import keeps every table row (a record), every cell's original text (so an unchanged
record renders byte-for-byte as it was), and all text between tables (documents). Render
writes each cell from the registry's data; the original text is reused only while it
still says the same thing. So numbers in the rendered file come from the registry, and a
record changed in the registry (a new status, metric, invalidation) shows the change.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenscal.registry.ids import RegistryError, check_status, kind_of
from lenscal.registry.store import Record, Registry

IMPORTED = "imported:"
NONE_CELLS = {"", "--", "-", "—", "n/a", "N/A"}


@dataclass(frozen=True)
class SectionSpec:
    """A run table: its kind, its columns, and the status of rows it has no Status column for."""

    title: str
    kind: str
    columns: tuple[str, ...]
    default_status: str = "Complete"
    bold_status: bool = False
    id_as_config_file: bool = False  # the ID cell is `<id>.yaml` in backticks


SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec(
        "Training Generations (EfficientNetV2-S)",
        "training",
        (
            "Gen ID",
            "Config File",
            "LR",
            "Epochs",
            "Init From",
            "Annulus",
            "Loss",
            "Status",
            "Best AUC",
            "Notes",
        ),
    ),
    SectionSpec(
        "Training Generations (Bottlenecked ResNet)",
        "training",
        ("Gen ID", "Config File", "LR", "Epochs", "Annulus", "Status", "Notes"),
    ),
    SectionSpec(
        "Other Training Configs (not part of main Paper IV line)",
        "training",
        ("Config", "Purpose", "Status"),
        id_as_config_file=True,
    ),
    SectionSpec(
        "Injection Model Variants",
        "injection_model",
        ("ID", "Directory", "Host Selection", "Lens Params", "Status", "Key Finding"),
    ),
    SectionSpec(
        "Diagnostic Runs",
        "diagnostic",
        ("Run ID", "Date", "Scripts", "Checkpoint", "Results Path", "Status", "Key Finding"),
        bold_status=True,
    ),
    SectionSpec(
        "Evaluation Runs",
        "evaluation",
        ("Run ID", "Date", "Checkpoint", "Injection Model", "Results Path", "Key Metrics"),
    ),
)
SECTION_BY_TITLE = {s.title: s for s in SECTIONS}
ID_COLUMNS = {"Gen ID", "Run ID", "ID", "Config"}
PARENT_COLUMNS = {"Checkpoint": "checkpoint", "Injection Model": "injection_model", "Init From": "init_from"}
METRIC_COLUMNS = {"Best AUC": "best_val_auc"}
NOTE_COLUMNS = {"Notes", "Key Finding", "Key Metrics"}


# --- parsing the file ---------------------------------------------------------------------


@dataclass
class Block:
    title: str | None  # None: text before the first section
    before: list[str]
    header: list[str] | None
    separator: str | None
    rows: list[list[str]]
    after: list[str]


def split_row(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", body)]


def parse_blocks(text: str) -> list[Block]:
    blocks: list[Block] = [Block(None, [], None, None, [], [])]
    for line in text.splitlines():
        current = blocks[-1]
        if line.startswith("## "):
            blocks.append(Block(line[3:].strip(), [], None, None, [], []))
        elif line.lstrip().startswith("|") and not current.after:
            if current.header is None:
                current.header = split_row(line)
            elif current.separator is None and re.fullmatch(r"\|?[\s:|-]+\|?", line.strip()):
                current.separator = line
            else:
                current.rows.append(split_row(line))
        elif current.header is None:
            current.before.append(line)
        else:
            current.after.append(line)
    return blocks


# --- import -------------------------------------------------------------------------------


def import_markdown(registry: Registry, path: str | Path) -> list[str]:
    """Read the team's registry file into ``registry``; returns the record IDs created."""
    source = Path(path)
    blocks = parse_blocks(source.read_text())
    tag = f"{IMPORTED}{source.name}"
    pending: list[tuple[str, dict[str, str], SectionSpec]] = []
    layout: list[str] = []
    for block in blocks:
        key = block.title or ""
        layout.append(key)
        registry.set_document(f"before:{key}", json.dumps(block.before))
        registry.set_document(f"after:{key}", json.dumps(block.after))
        spec = SECTION_BY_TITLE.get(block.title or "")
        if spec is None or block.header is None:
            registry.set_document(f"table:{key}", _table_text(block))
            continue
        if tuple(block.header) != spec.columns:
            raise RegistryError(
                f"{source}: section {spec.title!r} has columns {block.header}, expected {list(spec.columns)}"
            )
        registry.set_document(f"separator:{key}", block.separator or "")
        for number, row in enumerate(block.rows, start=1):
            if len(row) != len(spec.columns):
                raise RegistryError(
                    f"{source}: section {spec.title!r} row {number} has {len(row)} cells, "
                    f"expected {len(spec.columns)}"
                )
            pending.append((key, dict(zip(spec.columns, row, strict=True)), spec))
    registry.set_document("layout", json.dumps(layout))

    clashes = [r for r in (_row_id(c, s) for _, c, s in pending) if registry.exists(r)]
    if clashes:
        raise RegistryError(f"{source}: records already in the registry: {', '.join(clashes)}")
    created: list[str] = []
    for key, cells, spec in pending:  # pass 1: records
        run_id = _row_id(cells, spec)
        status_cell = cells.get("Status")
        status, _ = parse_status(status_cell) if status_cell is not None else (spec.default_status, False)
        notes = next((cells[c] for c in spec.columns if c in NOTE_COLUMNS), "")
        metrics: dict[str, float | str] = {}
        for column, name in METRIC_COLUMNS.items():
            if column in cells and cells[column] not in NONE_CELLS:
                metrics[name] = parse_metric(cells[column])
        if "Key Metrics" in cells:
            metrics.update(key_metric_numbers(cells["Key Metrics"]))
        registry.add(
            spec.kind,
            run_id,
            status=status,
            notes=notes if notes not in NONE_CELLS else "",
            description=cells.get("Purpose", ""),
            metrics=metrics,
            metric_source=tag,
            results_path=_strip_code(cells["Results Path"]) if "Results Path" in cells else None,
            run_date=parse_date(cells["Date"]) if "Date" in cells else None,
            git_commit="",
            extra={"cells": cells, "imported_from": str(source)},
            section=key,
        )
        created.append(run_id)
    for _, cells, spec in pending:  # pass 2: lineage and invalidations, now every ID exists
        run_id = _row_id(cells, spec)
        for column, role in PARENT_COLUMNS.items():
            parent = parse_parent(cells.get(column, ""))
            if parent is not None and registry.exists(parent):
                registry.add_parent(run_id, parent, role)
        notes = next((cells[c] for c in spec.columns if c in NOTE_COLUMNS), "")
        status_says = "Status" in cells and parse_status(cells["Status"])[1]
        notes_say = "Status" not in cells and "INVALIDATED:" in notes  # tables without a Status column
        if status_says or notes_say:
            successor = re.search(r"[Ss]uperseded by ([A-Za-z0-9_-]+?)\.?(?:\s|$)", notes)
            superseded = successor.group(1) if successor and registry.exists(successor.group(1)) else None
            registry.invalidate(run_id, notes or "invalidated", superseded)
    return created


def _table_text(block: Block) -> str:
    if block.header is None:
        return ""
    lines = ["| " + " | ".join(block.header) + " |"]
    if block.separator is not None:
        lines.append(block.separator)
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in block.rows]
    return "\n".join(lines)


# --- cell parsers (shared by import and render) -------------------------------------------


def _strip_code(cell: str) -> str:
    return cell.strip().strip("`").strip()


def _strip_bold(cell: str) -> str:
    return re.sub(r"^\*\*(.*)\*\*$", r"\1", cell.strip())


def _row_id(cells: dict[str, str], spec: SectionSpec) -> str:
    column = next(c for c in spec.columns if c in ID_COLUMNS)
    raw = _strip_code(cells[column])
    return raw.removesuffix(".yaml") if spec.id_as_config_file else raw


def parse_status(cell: str) -> tuple[str, bool]:
    """'**Complete (INVALIDATED)**' -> ('Complete', True); 'Completed' -> ('Complete', False)."""
    text = _strip_bold(cell)
    invalidated = "(INVALIDATED)" in text.upper()
    text = re.sub(r"\s*\(invalidated\)\s*", "", text, flags=re.IGNORECASE)
    return check_status(text), invalidated


def parse_metric(cell: str) -> float | str:
    text = _strip_bold(cell)
    try:
        return float(text)
    except ValueError:
        return text  # "~0.991": kept as the team wrote it


def key_metric_numbers(cell: str) -> dict[str, float]:
    """Explicit name=value pairs in a Key Metrics cell ('AUC=0.9921' -> {'auc': 0.9921})."""
    return {
        m.group(1).lower(): float(m.group(2)) for m in re.finditer(r"([A-Za-z][\w-]*)=([-+]?\d*\.?\d+)", cell)
    }


def parse_parent(cell: str) -> str | None:
    token = _strip_code(cell).split("/")[0].split()[0] if _strip_code(cell) else ""
    return token if token and kind_of(token) is not None else None


def parse_date(cell: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(cell.strip())
    except ValueError:
        return None


# --- render -------------------------------------------------------------------------------


def render_markdown(registry: Registry) -> str:
    """The registry as the team's markdown file."""
    records = registry.records()
    layout = json.loads(registry.document("layout") or "null") or ["", *[s.title for s in SECTIONS]]
    for known in SECTIONS:
        if known.title not in layout and any(_section_for(r) == known.title for r in records):
            layout.append(known.title)
    lines: list[str] = []
    for key in layout:
        if key:
            lines.append(f"## {key}")
        lines.extend(_lines(registry, f"before:{key}", [""] if key else ["# Experiment Registry", ""]))
        spec = SECTION_BY_TITLE.get(key)
        if spec is None:
            table = registry.document(f"table:{key}")
            if table:
                lines.extend(table.split("\n"))
        else:
            lines.append("| " + " | ".join(spec.columns) + " |")
            separator = registry.document(f"separator:{key}")
            lines.append(separator or "|" + "|".join("-" * (len(c) + 2) for c in spec.columns) + "|")
            for record in records:
                if _section_for(record) == key:
                    lines.append("| " + " | ".join(_cell(record, spec, c) for c in spec.columns) + " |")
        lines.extend(_lines(registry, f"after:{key}", ["", "---", ""] if key else []))
    return "\n".join(lines).rstrip("\n") + "\n"


def _lines(registry: Registry, key: str, default: list[str]) -> list[str]:
    stored = registry.document(key)
    return default if stored is None else list(json.loads(stored))


def _section_for(record: Record) -> str:
    if record.section:
        return record.section
    if record.kind == "training":
        if record.id.startswith("resnet-gen"):
            return "Training Generations (Bottlenecked ResNet)"
        if re.fullmatch(r"gen\d+[a-z]?", record.id):
            return "Training Generations (EfficientNetV2-S)"
        return "Other Training Configs (not part of main Paper IV line)"
    return next(s.title for s in SECTIONS if s.kind == record.kind)


def _cell(record: Record, spec: SectionSpec, column: str) -> str:
    raw: str | None = record.extra.get("cells", {}).get(column)
    current, parse, fmt = _column_value(record, spec, column)
    if raw is not None and parse(raw) == current:
        return raw
    return fmt(current).replace("|", "\\|")


def _annotated_notes(record: Record, notes: str) -> str:
    """Notes plus what a reader must not miss: this record's or an upstream invalidation."""
    if record.invalidated and record.invalidated_reason and record.invalidated_reason not in notes:
        notes = f"{notes} INVALIDATED: {record.invalidated_reason}".strip()
    if record.superseded_by and f"uperseded by {record.superseded_by}" not in notes:
        notes = f"{notes} Superseded by {record.superseded_by}.".strip()
    if record.upstream_invalid:
        marker = f"UPSTREAM INVALIDATED ({', '.join(u['id'] for u in record.upstream_invalid)})."
        if marker not in notes:
            notes = f"{notes} {marker}".strip()
    return notes


def _column_value(
    record: Record, spec: SectionSpec, column: str
) -> tuple[Any, Callable[[str], Any], Callable[[Any], str]]:
    """(current value, how a cell parses to a value, how a value is written) for a column."""
    if column in ID_COLUMNS:
        if spec.id_as_config_file:
            return record.id, lambda c: _strip_code(c).removesuffix(".yaml"), lambda v: f"`{v}.yaml`"
        return record.id, _strip_code, str
    if column == "Status":
        base = record.status_before_invalidation if record.invalidated else record.status
        status_value = (base, record.invalidated)

        def fmt_status(v: tuple[str | None, bool]) -> str:
            text = f"{v[0]} (INVALIDATED)" if v[1] else str(v[0])
            return f"**{text}**" if spec.bold_status else text

        return status_value, parse_status, fmt_status
    if column in PARENT_COLUMNS:
        role = PARENT_COLUMNS[column]
        parent = next((p["id"] for p in record.parents if p["role"] == role), None)
        return parent, parse_parent, lambda v: v or "--"
    if column in METRIC_COLUMNS:
        metric = record.metrics.get(METRIC_COLUMNS[column])
        return (
            metric,
            lambda c: None if c in NONE_CELLS else parse_metric(c),
            lambda v: "--" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)),
        )
    if column == "Key Metrics":
        numbers = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.metrics.items()
        )
        return _annotated_notes(record, record.notes or numbers) or "--", lambda c: c, str
    if column in NOTE_COLUMNS:
        return _annotated_notes(record, record.notes) or "--", lambda c: c, str
    if column == "Purpose":
        return record.description or "--", lambda c: c, str
    if column == "Results Path":
        return record.results_path, _strip_code, lambda v: f"`{v}`" if v else "--"
    if column == "Date":
        return record.run_date, lambda c: None if c in NONE_CELLS else c.strip(), lambda v: v or "--"
    # The team's descriptive columns (LR, Epochs, Scripts, ...): free text kept in extra.
    value = record.extra.get("columns", {}).get(column)
    raw = record.extra.get("cells", {}).get(column)
    shown = value if value is not None else raw
    return shown, lambda c: c, lambda v: "--" if v is None else str(v)
