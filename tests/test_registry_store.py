"""Registry store: lineage, invalidation propagation, metrics from files, verify, migrations."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lenscal.registry.ids import RegistryError
from lenscal.registry.schema import Base
from lenscal.registry.store import Registry

from .conftest import LENSCAL


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")


def lineage(registry: Registry) -> None:
    """gen2 -> gen4 (init_from) -> {D05, E04-IM1 (+IM1)}; E04-IM1 -> D06 (grid)."""
    registry.add("training", "gen2", status="Trained", git_commit="")
    registry.add("training", "gen4", status="Trained", parents=[("gen2", "init_from")], git_commit="")
    registry.add("injection_model", "IM1", git_commit="")
    registry.add("diagnostic", "D05", status="Complete", parents=[("gen4", "checkpoint")], git_commit="")
    registry.add(
        "evaluation", "E04-IM1", parents=[("gen4", "checkpoint"), ("IM1", "injection_model")], git_commit=""
    )
    registry.add("diagnostic", "D06", parents=[("E04-IM1", "grid")], git_commit="")
    registry.add("training", "resnet-gen1", status="Trained", git_commit="")


def test_invalidation_propagates_transitively_without_deleting(registry: Registry) -> None:
    lineage(registry)
    registry.invalidate("gen2", "trained on a leaky split")
    for run_id in ("gen4", "D05", "E04-IM1", "D06"):
        record = registry.get(run_id)
        assert record.upstream_invalid == [{"id": "gen2", "reason": "trained on a leaky split"}], run_id
        assert not record.invalidated and record.status != "Invalidated"
    assert registry.get("IM1").upstream_invalid == []
    assert registry.get("resnet-gen1").upstream_invalid == []
    gen2 = registry.get("gen2")
    assert gen2.invalidated and gen2.status == "Invalidated" and gen2.status_before_invalidation == "Trained"
    assert len(registry.records()) == 7
    registry.invalidate("IM1", "bad hosts", superseded_by="resnet-gen1")
    assert {u["id"] for u in registry.get("D06").upstream_invalid} == {"gen2", "IM1"}
    with pytest.raises(RegistryError, match=r"is invalidated .* its status is final"):
        registry.set_status("gen2", "Trained")


def test_add_refuses_bad_input_with_named_problems(registry: Registry) -> None:
    lineage(registry)
    with pytest.raises(RegistryError, match="record 'gen4' already exists"):
        registry.add("training", "gen4", git_commit="")
    with pytest.raises(RegistryError, match=r"parent 'gen9' \(checkpoint\) of D07 is not in the registry"):
        registry.add("diagnostic", "D07", parents=[("gen9", "checkpoint")], git_commit="")
    assert not registry.exists("D07")  # nothing half-written
    with pytest.raises(RegistryError, match="unknown parent role 'father'"):
        registry.add("diagnostic", "D08", parents=[("gen4", "father")], git_commit="")
    with pytest.raises(RegistryError, match="would make a cycle"):
        registry.add_parent("gen2", "D05", "checkpoint")
    with pytest.raises(RegistryError, match="unknown status 'Finished'"):
        registry.add("diagnostic", "D09", status="Finished", git_commit="")
    with pytest.raises(RegistryError, match="invalidated with `invalidate`"):
        registry.add("diagnostic", "D09", status="Invalidated", git_commit="")
    with pytest.raises(RegistryError, match="no record or alias 'gen7'"):
        registry.get("gen7")


def test_aliases_config_hash_and_diff(registry: Registry) -> None:
    a = registry.add("training", "gen5a", config={"train": {"lr": 3.88e-4, "epochs": 160}}, git_commit="abc")
    b = registry.add("training", "gen5b", config={"train": {"lr": 5e-5, "epochs": 160}}, git_commit="abc")
    assert a.config_sha256 and a.config_sha256 != b.config_sha256
    same = registry.add(
        "training", "gen5c", config={"train": {"epochs": 160, "lr": 3.88e-4}}, git_commit="abc"
    )
    assert same.config_sha256 == a.config_sha256  # key order does not change the hash
    registry.set_metrics("gen5a", {"auc": 0.99})
    registry.set_metrics("gen5b", {"auc": 0.98})
    registry.alias("current-best", "gen5a")
    assert registry.get("current-best").id == "gen5a" and registry.get("gen5a").aliases == ["current-best"]
    registry.alias("current-best", "gen5b")
    assert registry.get("current-best").id == "gen5b"
    with pytest.raises(RegistryError, match="looks like a record ID"):
        registry.alias("gen6", "gen5a")
    diff = registry.diff("gen5a", "gen5b")
    assert diff.config == {"train.lr": (3.88e-4, 5e-5)}
    assert diff.metrics == {"auc": (0.99, 0.98)}


def test_metrics_come_from_files_and_verify_catches_changes(registry: Registry, tmp_path: Path) -> None:
    registry.add("evaluation", "E04-eval", git_commit="")
    results = tmp_path / "results" / "E04-eval_20260211_eval"
    results.mkdir(parents=True)
    (results / "metrics.json").write_text(
        json.dumps({"auc": 0.9921, "recall": {"A": 0.893, "B": 0.41}, "n": 7})
    )
    (results / "roc.png").write_bytes(b"\x89PNG fake")
    (results / "scores.parquet").write_bytes(b"x" * 100)
    record = registry.record_results("E04-eval", results)
    assert record.metrics == {"auc": 0.9921, "recall.A": 0.893, "recall.B": 0.41, "n": 7.0}
    assert record.metric_sources["auc"] == str(results / "metrics.json")
    assert len(record.artifacts) == 3 and record.results_path == str(results)
    assert registry.verify() == []
    (results / "roc.png").write_bytes(b"\x89PNG changed")
    (results / "scores.parquet").unlink()
    problems = {(Path(p.path).name, p.problem.split(" ")[0]) for p in registry.verify()}
    assert problems == {("roc.png", "changed"), ("scores.parquet", "missing")}
    # A metric edited in the registry by hand no longer matches its file: drift is reported.
    registry.set_metrics("E04-eval", {"auc": 0.95}, source=str(results / "metrics.json"), source_sha256="x")
    assert any("metric drift: registry auc=0.95, file says 0.9921" in p.problem for p in registry.verify())
    with pytest.raises(RegistryError, match="no metrics file"):
        registry.record_results("E04-eval", tmp_path)


def test_schema_matches_migrations_and_reopen_keeps_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    first = Registry(url)
    first.add("diagnostic", "D01", git_commit="")
    with first.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"schema.py changed without a migration: {diff}"
    second = Registry(url)  # a second open (an upgrade) keeps what was there
    assert [r.id for r in second.records()] == ["D01"]


def test_default_database_lives_in_lenscal_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LENSCAL_HOME", str(tmp_path / "home"))
    registry = Registry()
    registry.add("diagnostic", "D01", git_commit="")
    assert (tmp_path / "home" / "registry.sqlite").is_file()
    with registry.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_cli_add_show_invalidate_verify(tmp_path: Path) -> None:
    url = ["--url", f"sqlite:///{tmp_path / 'r.sqlite'}"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LENSCAL, "registry", *args, *url], capture_output=True, text=True)

    assert run("add", "--kind", "training", "--id", "gen4", "--status", "Trained").returncode == 0
    added = run(
        "add", "--kind", "diagnostic", "--id", "D05", "--parent", "gen4", "--metric", "completeness=0.0341"
    )
    assert added.returncode == 0, added.stderr
    bad = run("add", "--kind", "diagnostic", "--id", "D5")
    assert bad.returncode == 2 and "bad diagnostic ID 'D5': the rule is D<NN>" in bad.stderr
    assert run("invalidate", "gen4", "--reason", "annulus bug").returncode == 0
    shown = json.loads(run("show", "D05", "--json").stdout)
    for key in (
        "id",
        "kind",
        "status",
        "superseded_by",
        "invalidated",
        "invalidated_reason",
        "upstream_invalid",
        "parents",
        "metrics",
        "artifacts",
    ):
        assert key in shown
    assert shown["upstream_invalid"] == [{"id": "gen4", "reason": "annulus bug"}]
    assert shown["parents"] == [{"id": "gen4", "role": "checkpoint"}]
    assert shown["metrics"] == {"completeness": 0.0341}
    listed = run("list", "--status", "Invalidated")
    assert "gen4" in listed.stdout and "D05" not in listed.stdout
    artifact = tmp_path / "res"
    artifact.mkdir()
    (artifact / "metrics.json").write_text('{"completeness": 0.0341}')
    assert run("record-results", "D05", str(artifact)).returncode == 0
    assert run("verify").returncode == 0
    (artifact / "metrics.json").write_text('{"completeness": 0.043}')
    failed = run("verify")
    assert failed.returncode == 1 and "metrics.json: changed" in failed.stderr
