"""``report.md``: what a person reads first. The run's identity; a summary table with each
number the team recorded for this ID (their words, read from the registry's record when it
holds it) beside this run's value, interval, threshold and n; then per step what ran, the
decisive numbers (the check's headline, with their intervals), the key table and the
figures, linked relative to the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.diagnostics.config import ResolvedStep, TeamHeadline, TeamRun
from lenscal.fsutil import atomic_write_text

MAX_ROWS = 40
TABLE_FILE = "report_table.csv"  # a step's key table, as the check returned it


def read_table(directory: Path) -> pd.DataFrame | None:
    path = directory / TABLE_FILE
    return pd.read_csv(path) if path.is_file() else None


def write_report(
    out: Path,
    meta: dict[str, Any],
    steps: list[ResolvedStep],
    team: TeamRun | None = None,
    team_notes: str | None = None,
) -> Path:
    """``team``: the definition's record of the team's run; ``team_notes``: the registry's
    note on the team's record of this ID, when the registry holds one."""
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
    marks = {"DEMO preset": meta["preset"] == "demo", "MOCK survey": bool(meta.get("mock_hosts"))}
    if any(marks.values()):
        shown = " · ".join(m for m, on in marks.items() if on)
        lines[1:1] = ["", f"> **{shown}**: a demonstration of the pipeline, not a science result."]
    if meta.get("missing_steps"):
        lines.append(f"- not run yet: {', '.join(meta['missing_steps'])}")
    if team is not None and team.headlines:
        lines += ["", *summary_lines(out, meta, team, team_notes)]
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


def summary_lines(out: Path, meta: dict[str, Any], team: TeamRun, team_notes: str | None) -> list[str]:
    """The summary table: the team's recorded numbers beside this run's."""
    metrics = _read_json(out / "metrics.json")
    fpr_info = {}
    for step in metrics.values():
        if isinstance(step, dict) and isinstance(step.get("fpr_thresholds"), dict):
            fpr_info.update(step["fpr_thresholds"])
    if team_notes is None:
        source = f"as copied from the team's EXPERIMENT_REGISTRY.md into the definition of {meta['id']}"
    else:
        source = f"read from the registry's record {meta['id']}"
    lines = [
        "## Summary: this run beside the team's",
        "",
        f"The team ran {meta['id']} as: {team.ran}. Their numbers: {source}. This run: preset "
        f"`{meta['preset']}`, model `{meta['model'].get('model_id', '')}`; the two are comparable only "
        "when the checkpoint, data and preset are the team's.",
        "",
        "| headline | the team | this run | 95% interval | threshold | n |",
        "|---|---|---|---|---|---|",
    ]
    for h in team.headlines:
        team_text = h.team or "not recorded"
        if h.team and team_notes is not None and h.team not in team_notes:
            team_text += " (not in the registry's note)"
        value, interval, n = _this_run(metrics.get(h.step), h)
        threshold = h.threshold
        # an FPR threshold named in the metric's path (completeness/fpr=0.001, tier_A.fpr=0.001)
        if any(info.get("forced") and label in h.metric for label, info in fpr_info.items()):
            threshold += " **(forced: too few negatives)**"
        row = [h.label, team_text, value, interval, threshold, n]
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines


def _this_run(step: Any, h: TeamHeadline) -> tuple[str, str, str]:
    """(value, interval, n) of a headline in this run, as text ("not run" when absent)."""
    node = _walk(step, h.metric)
    if node is None:
        return "not run", "", ""
    fmt = (lambda v: f"{100 * v:.2f}%") if h.percent else (lambda v: f"{v:.4f}")
    if isinstance(node, bool):
        return ("yes" if node else "no"), "", ""
    interval = _walk(step, h.interval) if h.interval else None
    if isinstance(node, (int, float)):
        value, n = float(node), ""
    elif isinstance(node, dict):
        key = next((k for k in ("value", "fraction", "recall", "difference", "auc") if k in node), None)
        if key is None or node[key] is None:
            return "no data", "", ""
        value = float(node[key])
        n = _counts(node)
        if interval is None:
            interval = next(
                (node[k] for k in ("jeffreys95", "newcombe95_paired", "newcombe95", "ci95") if k in node),
                None,
            )
    else:
        return str(node), "", ""
    shown = f"[{fmt(float(interval[0]))}, {fmt(float(interval[1]))}]" if interval else ""
    return fmt(value), shown, n


def _counts(node: dict[str, Any]) -> str:
    """k/n of a proportion, or of both sides of a difference."""
    if "k" in node and "n" in node:
        return f"{node['k']}/{node['n']}"
    if "a" in node and "b" in node:  # a grid comparison: A k/n -> B k/n
        return f"{node['a'][0]}/{node['a'][1]} -> {node['b'][0]}/{node['b'][1]}"
    if "k_a" in node and "k_b" in node:  # paired variants: the same n injections
        return f"{node['k_a']}/{node['n']} -> {node['k_b']}/{node['n']} (paired)"
    return str(node.get("n", ""))


def _walk(node: Any, path: str) -> Any:
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
