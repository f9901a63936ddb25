"""The UI's routes (Starlette + Jinja2, served by uvicorn): HTML pages and, behind each, a JSON
endpoint under /api for notebooks and scripts. Every route reads; none writes. Files come
only through ``ResultsRoots.resolve``; anything it refuses is the one plain 404."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from lenscal.errors import LenscalError
from lenscal.registry import KINDS, STATUSES, Record, Registry, RegistryError
from lenscal.ui.guard import Guard
from lenscal.ui.lineage import lineage_svg
from lenscal.ui.render import relative_link, render_markdown
from lenscal.ui.results import FIGURES, describe, find_result_dirs, frame_json, kind_of, read_table
from lenscal.ui.roots import NotFound, ResultsRoots

HERE = Path(__file__).parent
PER_PAGE = 50
#: Types served as themselves; everything else is served as plain text (an .html or .svg
#: file in a results folder never runs in the UI's origin).
SERVED_AS_IS = {".png", ".jpg", ".jpeg", ".pdf", ".csv", ".json", ".parquet", ".npz", ".onnx"}


class UI:
    """What the routes read: the registry (opened read-only on first use) and the roots."""

    def __init__(self, registry_url: str | None, roots: ResultsRoots, token: str | None = None) -> None:
        self.registry_url, self.roots, self.token = registry_url, roots, token
        self._registry: Registry | None = None

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.registry_url, read_only=True)
        return self._registry


def create_app(
    registry_url: str | None, results: Sequence[str | Path], token: str | None = None
) -> Starlette:
    ui = UI(registry_url, ResultsRoots(results), token)
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    templates = Jinja2Templates(env=env)
    templates.env.globals.update(quote=quote, roots=ui.roots.roots, human_bytes=human_bytes)

    def page(request: Request, name: str, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context)

    # --- registry --------------------------------------------------------------------

    def query_records(request: Request) -> tuple[list[Record], dict[str, Any]]:
        kind = request.query_params.get("kind") or None
        status = request.query_params.get("status") or None
        text = request.query_params.get("q") or None
        registry = ui.registry()  # opening it may fail: a 503 naming why
        try:
            records = registry.records(kind=kind, status=status, text=text)
        except RegistryError as exc:  # an unknown kind or status
            raise HTTPException(400, str(exc)) from None
        pages = max(1, -(-len(records) // PER_PAGE))
        number = min(max(1, _int(request, "page", 1)), pages)
        filters = {
            "kind": kind or "",
            "status": status or "",
            "q": text or "",
            "page": number,
            "pages": pages,
        }
        return records, filters

    async def registry_page(request: Request) -> Response:
        records, filters = query_records(request)
        number = filters["page"]
        shown = records[(number - 1) * PER_PAGE : number * PER_PAGE]
        sections: dict[str, list[Record]] = {}
        for record in shown:
            sections.setdefault(record.section or record.kind, []).append(record)
        return page(
            request, "registry.html", sections=sections, total=len(records), filters=filters,
            kinds=KINDS, statuses=STATUSES, url=ui.registry().url_for_humans,
        )  # fmt: skip

    async def registry_api(request: Request) -> Response:
        records, filters = query_records(request)
        number = filters["page"]
        return JSONResponse(
            {
                **filters,
                "total": len(records),
                "records": [r.to_json() for r in records[(number - 1) * PER_PAGE : number * PER_PAGE]],
            }
        )

    async def registry_markdown(request: Request) -> Response:
        from lenscal.registry.markdown import render_markdown as registry_text

        text = registry_text(ui.registry())
        return page(request, "markdown.html", title="EXPERIMENT_REGISTRY.md", html=render_markdown(text))

    def record_data(rid: str) -> dict[str, Any]:
        registry = ui.registry()
        try:
            record = registry.get(rid)
        except RegistryError:
            raise HTTPException(404, f"no record or alias {rid!r}") from None
        everything = registry.records()
        children = [
            {"id": r.id, "role": p.get("role", "")}
            for r in everything
            for p in r.parents
            if p["id"] == record.id
        ]
        problems = {(p.path, p.problem) for p in registry.verify() if p.record_id == record.id}
        artifacts = []
        for artifact in record.artifacts:
            found = [problem for path, problem in problems if path == artifact["path"]]
            artifacts.append(
                {**artifact, "verify": found[0] if found else "ok", "url": file_url(artifact["path"])}
            )
        drift = sorted(problem for path, problem in problems if problem.startswith("metric"))
        return {
            "record": record,
            "children": children,
            "artifacts": artifacts,
            "metric_problems": drift,
            "results_url": dir_url(record.results_path),
            "svg": lineage_svg(record.id, everything),
        }

    async def record_page(request: Request) -> Response:
        data = record_data(request.path_params["rid"])
        metrics = list(data["record"].metrics.items())
        pages = max(1, -(-len(metrics) // PER_PAGE))
        number = min(max(1, _int(request, "mpage", 1)), pages)
        data["metrics"] = {"rows": metrics[(number - 1) * PER_PAGE : number * PER_PAGE], "page": number,
                           "pages": pages, "total": len(metrics)}  # fmt: skip
        return page(request, "record.html", **data)

    async def record_api(request: Request) -> Response:
        data = record_data(request.path_params["rid"])
        return JSONResponse(
            {
                **data["record"].to_json(),
                "children": data["children"],
                "artifacts": data["artifacts"],
                "metric_problems": data["metric_problems"],
                "results_url": data["results_url"],
            }
        )

    def file_url(path: str | None) -> str | None:
        located = ui.roots.locate(path) if path else None
        return f"/files/{quote(located[0])}/{quote(located[1])}" if located else None

    def dir_url(path: str | None) -> str | None:
        located = ui.roots.locate(path) if path else None
        return f"/results/{quote(located[0])}/{quote(located[1])}" if located else None

    # --- results ---------------------------------------------------------------------

    def listing() -> list[dict[str, Any]]:
        out = []
        for root in ui.roots.roots:
            dirs = find_result_dirs(root.path) if root.path.is_dir() else []
            out.append(
                {
                    "name": root.name,
                    "path": str(root.path),
                    "exists": root.path.is_dir(),
                    "runs": [
                        {"relative": d.relative_to(root.path).as_posix(), "kind": kind_of(d)} for d in dirs
                    ],
                }
            )
        return out

    async def results_index(request: Request) -> Response:
        return page(request, "results.html", listing=listing())

    async def results_index_api(request: Request) -> Response:
        return JSONResponse({"roots": listing()})

    def resolve(request: Request) -> tuple[str, str, Path]:
        root, relative = request.path_params["root"], request.path_params.get("path", "")
        try:
            return root, relative.strip("/"), ui.roots.resolve(root, relative)
        except NotFound:
            raise HTTPException(404, "not found") from None

    def result_data(root: str, relative: str, path: Path) -> dict[str, Any]:
        info = describe(path, relative)
        link = relative_link(root, relative)
        data: dict[str, Any] = {
            "root": root,
            "info": info,
            "report_html": render_markdown(info.report, link) if info.report is not None else None,
            "crumbs": _crumbs(root, relative),
        }
        if info.kind == "grid":
            data["cells"] = (
                read_table(path / "cells.csv", per_page=PER_PAGE) if (path / "cells.csv").is_file() else None
            )
            here = (root, relative)
            data["others"] = [
                (r.name, d.relative_to(r.path).as_posix())
                for r in ui.roots.roots
                if r.path.is_dir()
                for d in find_result_dirs(r.path, "grid")
                if (r.name, d.relative_to(r.path).as_posix()) != here
            ]
        if info.kind == "diagnostic":
            data["steps"] = [
                {"name": e.name, "relative": e.relative, "kind": e.kind, "report": _first_line(path / e.name)}
                for e in info.entries
                if e.is_dir and e.name != "parts"
            ]
        return data

    async def result_page(request: Request) -> Response:
        root, relative, path = resolve(request)
        if not path.is_dir():
            return RedirectResponse(f"/files/{quote(root)}/{quote(relative)}", status_code=307)
        data = result_data(root, relative, path)
        if "table" in request.query_params:
            data["cells"] = table_for(request, path / Path(request.query_params["table"]).name)
        return page(request, "result.html", **data)

    async def result_api(request: Request) -> Response:
        root, relative, path = resolve(request)
        if not path.is_dir():
            raise HTTPException(404, "not found")
        info = describe(path, relative)
        return JSONResponse(
            {
                "root": root,
                "relative": relative,
                "kind": info.kind,
                "report": info.report,
                "figures": [
                    f"/files/{quote(root)}/{quote(f'{relative}/{n}'.strip('/'))}" for n in info.figures
                ],
                "tables": [
                    f"/api/table/{quote(root)}/{quote(f'{relative}/{n}'.strip('/'))}" for n in info.tables
                ],
                "entries": [vars(e) for e in info.entries],
                "summary": info.summary,
                "problems": info.problems,
            }
        )

    def table_for(request: Request, path: Path) -> dict[str, Any]:
        if not path.is_file() or not path.name.endswith((".csv", ".parquet")):
            raise HTTPException(404, "not found")
        try:
            table = read_table(
                path,
                page=_int(request, "page", 1),
                per_page=_int(request, "per_page", PER_PAGE),
                sort=request.query_params.get("sort") or None,
                descending=request.query_params.get("desc") == "1",
            )
        except (OSError, ValueError) as exc:
            raise HTTPException(
                422, f"{path.name}: cannot be read as a table ({type(exc).__name__})"
            ) from None
        table["name"] = path.name
        return table

    async def table_page(request: Request) -> Response:
        root, relative, path = resolve(request)
        table = table_for(request, path)
        parent = relative.rsplit("/", 1)[0] if "/" in relative else ""
        return page(
            request, "table.html", table=table, root=root, relative=relative, crumbs=_crumbs(root, parent)
        )

    async def table_api(request: Request) -> Response:
        _root, _relative, path = resolve(request)
        return JSONResponse(table_for(request, path))

    async def file_route(request: Request) -> Response:
        _root, _relative, path = resolve(request)
        if not path.is_file():
            raise HTTPException(404, "not found")
        suffix = path.suffix.lower()
        media = mimetypes.guess_type(path.name)[0] if suffix in SERVED_AS_IS else "text/plain; charset=utf-8"
        if suffix in (".parquet", ".npz", ".onnx"):
            media = "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Content-Security-Policy": "sandbox"})

    # --- compare ---------------------------------------------------------------------

    def compare_data(request: Request) -> dict[str, Any]:
        from lenscal.selection.compare import compare

        picked = []
        for key in ("a", "b"):
            value = request.query_params.get(key, "")
            root, _, relative = value.partition("/")
            try:
                picked.append((value, ui.roots.resolve(root, relative)))
            except NotFound:
                raise HTTPException(404, f"{key}: no grid run {value!r} under the results roots") from None
        try:
            comparison = compare(picked[0][1], picked[1][1])  # in memory: nothing is written
        except LenscalError as exc:
            return {"a": picked[0][0], "b": picked[1][0], "refused": str(exc)}
        return {
            "a": picked[0][0],
            "b": picked[1][0],
            "refused": None,
            "method": comparison.method,
            "pairing": comparison.pairing,
            "treatments": {k: list(v) for k, v in comparison.treatment_differences.items()},
            "marginals": {name: frame_json(t) for name, t in comparison.marginals.items()},
            "cells": {**frame_json(comparison.cells.head(500)), "total": len(comparison.cells)},
        }

    async def compare_page(request: Request) -> Response:
        return page(request, "compare.html", **compare_data(request))

    async def compare_api(request: Request) -> Response:
        return JSONResponse(compare_data(request))

    async def home(request: Request) -> Response:
        return RedirectResponse("/registry", status_code=307)

    async def favicon(request: Request) -> Response:
        # Browsers ask for /favicon.ico on pages without an icon link (the JSON endpoints):
        # a 404 there is a console error on every such page.
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    routes = [
        Route("/", home),
        Route("/favicon.ico", favicon),
        Route("/registry", registry_page),
        Route("/registry.md", registry_markdown),
        Route("/record/{rid:path}", record_page),
        Route("/results", results_index),
        Route("/results/{root}/{path:path}", result_page),
        Route("/results/{root}", result_page),
        Route("/table/{root}/{path:path}", table_page),
        Route("/files/{root}/{path:path}", file_route),
        Route("/compare", compare_page),
        Route("/api/records", registry_api),
        Route("/api/records/{rid:path}", record_api),
        Route("/api/results", results_index_api),
        Route("/api/results/{root}/{path:path}", result_api),
        Route("/api/results/{root}", result_api),
        Route("/api/table/{root}/{path:path}", table_api),
        Route("/api/compare", compare_api),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": exc.status_code, "detail": exc.detail},
            status_code=exc.status_code,
        )

    async def registry_error(request: Request, exc: Exception) -> Response:
        detail = f"the registry cannot be read: {exc}"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": detail}, status_code=503)
        return templates.TemplateResponse(
            request, "error.html", {"status": 503, "detail": detail}, status_code=503
        )

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, token=token)],
        exception_handlers={
            HTTPException: http_error,
            RegistryError: registry_error,
            FileNotFoundError: registry_error,
        },
    )
    app.state.ui = ui
    return app


def _int(request: Request, key: str, default: int) -> int:
    try:
        return int(request.query_params.get(key, default))
    except ValueError:
        raise HTTPException(400, f"{key}: not a whole number") from None


def _crumbs(root: str, relative: str) -> list[tuple[str, str]]:
    crumbs = [(root, f"/results/{quote(root)}/")]
    parts = [p for p in relative.split("/") if p]
    for i, part in enumerate(parts):
        crumbs.append((part, f"/results/{quote(root)}/{quote('/'.join(parts[: i + 1]))}"))
    return crumbs


def _first_line(directory: Path) -> str:
    """The first heading or line of a step's report.md ('' when it has none)."""
    try:
        for line in (directory / "report.md").read_text(errors="replace").splitlines():
            if line.strip():
                return line.lstrip("# ").strip()
    except OSError:
        pass
    return ""


def human_bytes(n: int | None) -> str:
    if n is None:
        return "missing"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


__all__ = ["FIGURES", "create_app"]
