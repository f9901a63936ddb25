"""`lenscal ui` through Starlette's test client, over a registry and results made by a small
real run (tests/ui_world.py): every page and its JSON, the compare picker, and the safety
rules (read-only, one 404 for anything outside the roots, markdown without raw HTML, a
token for non-loopback binds, missing files shown as missing)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lenscal.errors import LenscalError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | str]]:
    from tests.ui_world import build_ui_world

    root = tmp_path_factory.mktemp("ui-world")
    mp = pytest.MonkeyPatch()
    mp.setenv("LENSCAL_HOME", str(root / "home"))
    mp.chdir(root)
    try:
        yield build_ui_world(root)
    finally:
        mp.undo()


@pytest.fixture()
def client(world: dict[str, Path | str]) -> TestClient:
    from lenscal.ui.app import create_app

    return TestClient(create_app(str(world["registry"]), [world["results"]]))


def _d05(world: dict[str, Path | str]) -> str:
    return "D05_demo"


def test_registry_page_lists_the_runs_by_section_and_filters(client: TestClient) -> None:
    page = client.get("/registry")
    assert page.status_code == 200
    for rid in ("demo_resnet", "IM1", "D05_"):
        assert rid in page.text
    only = client.get("/registry", params={"kind": "training"}).text
    assert "demo_resnet" in only and "/record/IM1" not in only
    found = client.get("/api/records", params={"q": "demo_resnet"}).json()
    assert {r["id"] for r in found["records"]} >= {"demo_resnet"}
    bad = client.get("/registry", params={"kind": "nonsense"})
    assert bad.status_code == 400 and "nonsense" in bad.text


def test_the_icon_is_served_where_browsers_look_for_it(client: TestClient) -> None:
    # A browser asks for /favicon.ico on every page without an icon link (the JSON ones);
    # a 404 there is a console error (CI's browser test caught it after the JSON page).
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.lstrip().startswith(b"<svg")
    linked = client.get("/registry").text
    assert '<link rel="icon" href="/static/favicon.svg"' in linked
    assert client.get("/static/favicon.svg").content == icon.content


def test_record_page_has_config_hash_lineage_metrics_and_verified_artifacts(client: TestClient) -> None:
    records = client.get("/api/records", params={"kind": "diagnostic"}).json()["records"]
    d05 = records[0]["id"]
    page = client.get(f"/record/{d05}")
    assert page.status_code == 200
    assert "<svg" in page.text and 'href="/record/demo_resnet"' in page.text  # parent drawn, linked
    assert "checkpoint" in page.text and "injection_model" in page.text  # edge roles
    data = client.get(f"/api/records/{d05}").json()
    assert data["config_sha256"] and data["config_sha256"] in page.text
    assert data["results_url"].startswith("/results/results/D05_demo")
    parent = client.get("/api/records/demo_resnet").json()
    assert {"id": d05, "role": "checkpoint"} in parent["children"]
    assert all(a["verify"] == "ok" for a in parent["artifacts"])
    some_metric = next(iter(data["metric_sources"].items()))
    assert some_metric[1] and some_metric[1] in page.text  # the file each metric came from


def test_the_rendered_experiment_registry(client: TestClient) -> None:
    page = client.get("/registry.md")
    assert page.status_code == 200 and "<table>" in page.text and "demo_resnet" in page.text


def test_d05_report_renders_with_its_figures_inline(client: TestClient) -> None:
    page = client.get("/results/results/D05_demo")
    assert page.status_code == 200 and "diagnostic" in page.text
    images = [p.split('"')[0] for p in page.text.split('<img src="')[1:]]
    assert images, "the report's figures are inline"
    for src in images:
        assert src.startswith("/files/results/D05_demo/")
        got = client.get(src)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert "/results/results/D05_demo/bright_arc" in page.text  # the steps, linked


def test_grid_page_heatmaps_sortable_cells_and_compare(client: TestClient) -> None:
    page = client.get("/results/results/grid-demo")
    assert page.status_code == 200
    assert "completeness_heatmaps.png" in page.text and "cells.csv" in page.text
    assert 'value="results/grid-demo-seed2"' in page.text  # the compare picker offers the other run
    table = client.get(
        "/api/table/results/grid-demo/cells.csv", params={"sort": "n", "desc": "1", "per_page": 5}
    )
    t = table.json()
    n = t["columns"].index("n")
    values = [row[n] for row in t["rows"]]
    assert values == sorted(values, reverse=True) and len(values) == 5 and t["pages"] > 1
    compared = client.get(
        "/api/compare", params={"a": "results/grid-demo", "b": "results/grid-demo-seed2"}
    ).json()
    assert compared["refused"] is None and compared["cells"]["total"] > 0
    assert "seed" in compared["treatments"]


def test_a_finder_comparison_three_levels_down_is_listed_with_its_figure_first(client: TestClient) -> None:
    listed = client.get("/results").text
    assert "selection-compare/demo/compare" in listed
    page = client.get("/results/results/selection-compare/demo/compare")
    assert page.status_code == 200 and '<span class="tag kind">finders</span>' in page.text
    assert page.text.index("finders.png") < page.text.index("difference_heatmaps.png")


def test_compare_refuses_different_geometry_naming_the_fields(
    client: TestClient, world: dict[str, Path | str]
) -> None:
    results = Path(world["results"])
    other = results / "grid-other-geometry"
    if not other.exists():
        shutil.copytree(results / "grid-demo", other)
        meta = json.loads((other / "meta.json").read_text())
        axes = meta["geometry"]
        key = next(iter(axes))
        axes[key] = {"changed": True}
        (other / "meta.json").write_text(json.dumps(meta))
    got = client.get(
        "/api/compare", params={"a": "results/grid-demo", "b": "results/grid-other-geometry"}
    ).json()
    assert got["refused"] and "different grids" in got["refused"]
    page = client.get("/compare", params={"a": "results/grid-demo", "b": "results/grid-other-geometry"})
    assert page.status_code == 200 and "Refused" in page.text


def test_training_run_page_shows_curve_and_metrics(client: TestClient) -> None:
    page = client.get("/results/results/runs/demo_resnet")
    assert page.status_code == 200 and "training" in page.text
    assert 'src="/files/results/runs/demo_resnet/training_curve.png"' in page.text
    assert "metrics.json" in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/files/results/..%2Fregistry.sqlite",  # exists, one level above the root
        "/files/results/%2e%2e/registry.sqlite",
        "/files/results/grid-demo/..%2F..%2Fregistry.sqlite",
        "/results/results/..%2F..",
        "/files/results/grid-demo/..%2F..%2F..%2Fetc%2Fpasswd",
        "/files/nosuchroot/x.png",
        "/files/results/grid-demo/absent.png",
        "/files/results/%00",
        "/api/results/results/..%2F..",
    ],
)
def test_paths_outside_the_roots_are_one_uniform_404(client: TestClient, path: str) -> None:
    got = client.get(path)
    assert got.status_code == 404
    assert "registry.sqlite" not in got.text and "root:" not in got.text


def test_a_link_pointing_out_of_a_root_is_not_followed(
    client: TestClient, world: dict[str, Path | str]
) -> None:
    results = Path(world["results"])
    link = results / "grid-demo" / "escape.txt"
    if not link.is_symlink():
        link.symlink_to(Path(str(world["registry"]).removeprefix("sqlite:///")))
    assert client.get("/files/results/grid-demo/escape.txt").status_code == 404
    listing = client.get("/results/results/grid-demo")
    assert listing.status_code == 200  # the directory still lists


def test_markdown_with_script_is_neutralised(client: TestClient, world: dict[str, Path | str]) -> None:
    folder = Path(world["results"]) / "hostile"
    folder.mkdir(exist_ok=True)
    (folder / "report.md").write_text(
        "# Hi\n\n<script>alert(1)</script>\n\n[x](javascript:alert(2))\n\n<img src=x onerror=alert(3)>\n"
    )
    (folder / "page.html").write_text("<script>alert(4)</script>")
    page = client.get("/results/results/hostile")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert 'href="javascript:' not in page.text and "<img src=x" not in page.text
    raw = client.get("/files/results/hostile/page.html")
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["content-security-policy"] == "sandbox"
    assert (
        "script-src" not in page.headers["content-security-policy"]
        or "'unsafe-inline'" not in page.headers["content-security-policy"]
    )


def test_a_missing_file_is_shown_missing_not_a_500(client: TestClient, world: dict[str, Path | str]) -> None:
    folder = Path(world["results"]) / "moved"
    folder.mkdir(exist_ok=True)
    dangling = folder / "gone.png"
    if not dangling.is_symlink():
        dangling.symlink_to(folder / "does-not-exist.png")
    (folder / "report.md").write_text("# Moved\n\n![a figure that moved](gone.png)\n")
    page = client.get("/results/results/moved")
    assert page.status_code == 200 and "missing" in page.text
    assert client.get("/files/results/moved/gone.png").status_code == 404


def test_nothing_is_written_while_browsing(client: TestClient, world: dict[str, Path | str]) -> None:
    db = Path(str(world["registry"]).removeprefix("sqlite:///"))

    import gc
    import sqlite3

    gc.collect()  # the world's writers, closed; their log folded into the file, so it is still
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def snapshot() -> dict[str, str]:
        files = [db, *Path(world["results"]).rglob("*")]
        return {
            str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files
            if p.is_file() and not p.is_symlink()
        }

    before = snapshot()
    for path in ("/registry", "/registry.md", "/api/records", "/results", "/results/results/D05_demo",
                 "/results/results/grid-demo", "/record/demo_resnet", "/api/records/demo_resnet",
                 "/compare?a=results/grid-demo&b=results/grid-demo-seed2"):  # fmt: skip
        assert client.get(path).status_code == 200, path
    assert snapshot() == before
    for method in ("post", "put", "delete"):
        assert getattr(client, method)("/registry").status_code == 405


def test_token_guards_every_route(world: dict[str, Path | str]) -> None:
    from lenscal.ui.app import create_app

    guarded = TestClient(create_app(str(world["registry"]), [world["results"]], token="s3cret"))
    assert guarded.get("/registry").status_code == 401
    assert guarded.get("/files/results/grid-demo/cells.csv").status_code == 401
    assert guarded.get("/registry", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = guarded.get("/registry", params={"token": "s3cret"})
    assert first.status_code == 200 and "lenscal_ui_token" in first.headers["set-cookie"]
    assert guarded.get("/results").status_code == 200  # the cookie set above


def test_a_non_loopback_bind_needs_a_token(tmp_path: Path) -> None:
    from lenscal.commands.ui import is_loopback, ui

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(LenscalError, match="--token-file"):
        ui(host="0.0.0.0", port=8765, results=[tmp_path], token_file=None, registry=None, insecure_bind=False)


def test_result_url_matches_the_routes(world: dict[str, Path | str], client: TestClient) -> None:
    from lenscal.ui.roots import result_url

    results = Path(world["results"])
    url = result_url(
        "http://ui:8765/", results, results / "grid-demo" / "completeness_heatmaps.png", file=True
    )
    assert url == "http://ui:8765/files/results/grid-demo/completeness_heatmaps.png"
    assert client.get(url.removeprefix("http://ui:8765")).status_code == 200


def test_prefect_artifact_embeds_figures_through_the_ui_or_lists_paths(tmp_path: Path) -> None:
    from lenscal_flows.common import artifact_markdown

    root = tmp_path / "results"
    run = root / "D05_20261204_demo"
    figure = run / "bright_arc" / "bright_arc.png"
    with_ui = artifact_markdown(run, "D05 (demo)", ["k/n = 3/16"], [figure], "http://127.0.0.1:8765", root)
    assert "[D05_20261204_demo](http://127.0.0.1:8765/results/results/D05_20261204_demo)" in with_ui
    assert (
        "![bright_arc.png](http://127.0.0.1:8765/files/results/D05_20261204_demo/bright_arc/bright_arc.png)"
        in with_ui
    )
    without = artifact_markdown(run, "D05 (demo)", ["k/n = 3/16"], [figure], None, root)
    assert "http" not in without and f"`{figure}`" in without
    elsewhere = artifact_markdown(tmp_path / "other" / "run", "x", [], [], "http://127.0.0.1:8765", root)
    assert "http" not in elsewhere  # not under the UI's root: a path, never a wrong link
