"""``report.md``: what a person reads first. The run's identity, then per step its
description, the decisive numbers (the check's headline, with their intervals), the key
table and the figures, linked relative to the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.diagnostics.config import ResolvedStep
from lenscal.fsutil import atomic_write_text

MAX_ROWS = 40
TABLE_FILE = "report_table.csv"  # a step's key table, as the check returned it


def read_table(directory: Path) -> pd.DataFrame | None:
    path = directory / TABLE_FILE
    return pd.read_csv(path) if path.is_file() else None


def write_report(out: Path, meta: dict[str, Any], steps: list[ResolvedStep]) -> Path:
    model = meta["model"]
    lines = [
        f"# {meta['id']}: {meta.get('description') or 'diagnostic run'}",
        "",
        f"- status: **{meta['status']}** (preset `{meta['preset']}`, "
        f"definition sha256 `{meta['definition_sha256'][:12]}`)",
        f"- model: `{model.get('name', '')}` ({model.get('architecture', '')}, "
        f"model id `{model['model_id']}`, bundle sha256 `{(model.get('bundle_sha256') or '')[:12]}`), "
        f"scored with {model.get('engine', '')} on {model.get('device', '')}",
        f"- hosts: `{meta['hosts'].get('shards', '')}` (sha256 `{meta['hosts']['shards_sha256'][:12]}`)",
        f"- lenscal {meta['lenscal_version']}",
    ]
    if meta.get("missing_steps"):
        lines.append(f"- not run yet: {', '.join(meta['missing_steps'])}")
    for number, step in enumerate(steps, 1):
        lines += ["", f"## {number}. {step.name} (`{step.check}`)", ""]
        done_file = out / step.name / "step.json"
        if not done_file.is_file():
            lines.append("_not run_")
            continue
        done = json.loads(done_file.read_text())
        lines.append(
            f"_Ran: {done.get('ran') or done.get('description', '')}_ ({done.get('seconds', 0):.1f} s)"
        )
        lines.append("")
        lines += [f"- {h}" for h in done.get("headline", [])]
        table = read_table(out / step.name)
        if table is not None and len(table):
            lines += ["", markdown_table(table)]
        for figure in done.get("figures", []):
            lines += ["", f"![{step.name}: {figure}]({step.name}/{figure})"]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def markdown_table(table: pd.DataFrame, max_rows: int = MAX_ROWS) -> str:
    shown = table.head(max_rows)
    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = [f"\n_{len(table) - max_rows} more rows in the step's CSV_"] if len(table) > max_rows else []
    return "\n".join([header, rule, *rows, *more])


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")
