"""Round trip of the team's hand-kept registry, checked field by field against the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lenscal.registry.markdown import import_markdown, render_markdown
from lenscal.registry.store import Registry

from .conftest import SEED_REGISTRY


def independent_rows(text: str) -> dict[str, dict[str, str]]:
    """Every table row of the file keyed by its first cell, parsed here without lenscal."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


@pytest.fixture()
def seeded(tmp_path: Path) -> Registry:
    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    import_markdown(registry, SEED_REGISTRY)
    return registry


def test_render_of_import_is_byte_identical(seeded: Registry) -> None:
    assert render_markdown(seeded) == SEED_REGISTRY.read_text()


def test_every_row_id_status_metric_and_finding_is_kept(seeded: Registry) -> None:
    rows = independent_rows(SEED_REGISTRY.read_text())
    runs = {
        k: v
        for k, v in rows.items()
        if not k.startswith("Training manifest")
        and "cutouts" not in k.lower()
        and k not in {"Positive cutouts", "Negative cutouts"}
    }
    assert len(runs) == 27
    for first_cell, cells in runs.items():
        run_id = first_cell.strip("`").removesuffix(".yaml")
        record = seeded.get(run_id)
        status_cell = cells.get("Status", "Complete").strip("*")
        expected = {"Completed": "Complete"}.get(status_cell, status_cell)
        if "(INVALIDATED)" in expected:
            assert record.status == "Invalidated" and record.invalidated
            assert record.status_before_invalidation == expected.replace(" (INVALIDATED)", "")
        else:
            assert record.status == expected, run_id
        finding = cells.get("Key Finding") or cells.get("Notes") or cells.get("Key Metrics")
        if finding is not None and finding != "--":
            assert record.notes == finding, run_id
        if cells.get("Best AUC", "--") != "--":
            value = cells["Best AUC"]
            assert record.metrics["best_val_auc"] == (float(value) if value[0].isdigit() else value)
        if "Results Path" in cells:
            assert record.results_path == cells["Results Path"].strip("`")
    assert seeded.get("E04-eval").metrics == {"auc": 0.9921}
    assert seeded.get("gen4").metrics["best_val_auc"] == 0.9921
    assert seeded.get("gen3").metrics["best_val_auc"] == "~0.991"


def test_lineage_invalidation_and_supersession_are_read(seeded: Registry) -> None:
    d03 = seeded.get("D03")
    assert d03.invalidated and d03.superseded_by == "D04"
    assert "Poisson clamp bug" in (d03.invalidated_reason or "")
    assert {(p["role"], p["id"]) for p in seeded.get("E04-IM2").parents} == {
        ("checkpoint", "gen4"),
        ("injection_model", "IM2"),
    }
    assert seeded.get("gen5b").parents == [{"id": "gen4", "role": "init_from"}]
    assert seeded.get("gen4").parents == [{"id": "gen2", "role": "init_from"}]
    assert seeded.get("D04").upstream_invalid == []


def test_render_reflects_registry_changes(seeded: Registry, tmp_path: Path) -> None:
    seeded.set_status("gen5a", "Trained")
    results = tmp_path / "gen5a"
    results.mkdir()
    (results / "metrics.json").write_text('{"best_val_auc": 0.99345, "epochs": 160}')
    seeded.record_results("gen5a", results)
    seeded.invalidate("IM2", "host catalogue bug", superseded_by="IM1")
    text = render_markdown(seeded)
    gen5a = next(line for line in text.splitlines() if line.startswith("| gen5a "))
    assert "| Trained | 0.9935 |" in gen5a
    im2 = next(line for line in text.splitlines() if line.startswith("| IM2 "))
    assert "Active (INVALIDATED)" in im2 and "host catalogue bug" in im2
    e04 = next(line for line in text.splitlines() if line.startswith("| E04-IM2 "))
    assert "UPSTREAM INVALIDATED (IM2)" in e04
    # The rendered file imports again into the same records.
    again = Registry(f"sqlite:///{tmp_path / 'again.sqlite'}")
    (tmp_path / "rendered.md").write_text(text)
    import_markdown(again, tmp_path / "rendered.md")
    assert again.get("gen5a").status == "Trained"
    assert again.get("IM2").invalidated and again.get("IM2").superseded_by == "IM1"
    assert len(again.records()) == len(seeded.records())


def test_import_refuses_duplicates_and_malformed_tables(seeded: Registry, tmp_path: Path) -> None:
    from lenscal.registry.ids import RegistryError

    with pytest.raises(RegistryError, match="records already in the registry: gen1"):
        import_markdown(seeded, SEED_REGISTRY)
    broken = tmp_path / "broken.md"
    broken.write_text(re.sub(r"\| gen2 \|", "| gen2 | extra |", SEED_REGISTRY.read_text(), count=1))
    fresh = Registry(f"sqlite:///{tmp_path / 'f.sqlite'}")
    with pytest.raises(RegistryError, match=r"row 2 has 11 cells, expected 10"):
        import_markdown(fresh, broken)
