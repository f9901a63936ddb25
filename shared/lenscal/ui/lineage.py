"""A record's lineage as an SVG drawn on the server (no JavaScript): ancestors in columns to
the left, the record in the middle, the runs built on it to the right, each box a link to
its record, each edge labelled with the parent's role (checkpoint, injection_model, ...)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from lenscal.registry import Record

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 190, 34, 70, 14, 10
MAX_DEPTH = 4


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    role: str


def edges_of(records: Iterable[Record]) -> list[Edge]:
    return [Edge(p["id"], r.id, p.get("role", "")) for r in records for p in r.parents]


def columns(focus: str, edges: list[Edge]) -> dict[int, list[str]]:
    """Generation -> record IDs: negative for ancestors, 0 the focus, positive descendants
    (each ID placed once, at its nearest generation, up to MAX_DEPTH each way)."""
    placed: dict[str, int] = {focus: 0}
    for step, (near, far) in ((-1, ("child", "parent")), (1, ("parent", "child"))):
        frontier, depth = [focus], 0
        while frontier and depth < MAX_DEPTH:
            depth += 1
            found = sorted({getattr(e, far) for e in edges if getattr(e, near) in frontier} - set(placed))
            for rid in found:
                placed[rid] = step * depth
            frontier = found
    out: dict[int, list[str]] = {}
    for rid, gen in sorted(placed.items(), key=lambda kv: (kv[1], kv[0])):
        out.setdefault(gen, []).append(rid)
    return out


def lineage_svg(focus: str, records: list[Record]) -> str:
    by_id = {r.id: r for r in records}
    edges = edges_of(records)
    cols = columns(focus, edges)
    gens = sorted(cols)
    tallest = max(len(v) for v in cols.values())
    width = PAD * 2 + len(gens) * BOX_W + (len(gens) - 1) * GAP_X
    height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y + 16
    where: dict[str, tuple[float, float]] = {}
    for i, gen in enumerate(gens):
        ids = cols[gen]
        top = PAD + 16 + (tallest - len(ids)) * (BOX_H + GAP_Y) / 2
        for j, rid in enumerate(ids):
            where[rid] = (PAD + i * (BOX_W + GAP_X), top + j * (BOX_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage of {escape(focus)}">'
    ]
    for i, gen in enumerate(gens):
        label = "this record" if gen == 0 else (f"parents ({-gen})" if gen < 0 else f"built on it ({gen})")
        x = PAD + i * (BOX_W + GAP_X) + BOX_W / 2
        parts.append(f'<text x="{x:.0f}" y="{PAD + 8}" class="col">{escape(label)}</text>')
    for e in edges:
        if e.parent in where and e.child in where and _left_to_right(where, e):
            (x1, y1), (x2, y2) = where[e.parent], where[e.child]
            ax, ay, bx, by = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
            parts.append(
                f'<path d="M{ax:.0f},{ay:.0f} C{ax + GAP_X / 2:.0f},{ay:.0f} {bx - GAP_X / 2:.0f},{by:.0f} '
                f'{bx:.0f},{by:.0f}" class="edge"/>'
                f'<text x="{(ax + bx) / 2:.0f}" y="{(ay + by) / 2 - 3:.0f}" class="role">'
                f"{escape(e.role)}</text>"
            )
    for rid, (x, y) in where.items():
        record = by_id.get(rid)
        state = _state(record)
        parts.append(
            f'<a href="/record/{escape(rid)}"><rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" '
            f'rx="5" class="node {state}{" focus" if rid == focus else ""}"/>'
            f'<text x="{x + 8:.0f}" y="{y + 14:.0f}" class="id">{escape(_short(rid))}</text>'
            f'<text x="{x + 8:.0f}" y="{y + 27:.0f}" class="sub">'
            f"{escape(record.kind if record else 'not in the registry')} · {escape(state)}</text></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _left_to_right(where: dict[str, tuple[float, float]], e: Edge) -> bool:
    """Only edges that run left to right (a parent drawn left of its child)."""
    return where[e.parent][0] < where[e.child][0]


def _state(record: Record | None) -> str:
    if record is None:
        return "missing"
    if record.invalidated:
        return "invalidated"
    if record.upstream_invalid:
        return "upstream-invalid"
    return record.status


def _short(rid: str, n: int = 26) -> str:
    return rid if len(rid) <= n else rid[: n - 1] + "…"
