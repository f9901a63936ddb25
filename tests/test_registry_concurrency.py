"""Many processes writing at once lose nothing: 8 processes x 50 adds plus shared updates,
on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lenscal.registry.store import Registry

PROCESSES, ADDS = 8, 50


def _worker(url: str, proc: int) -> None:
    registry = Registry(url)  # every worker also races to migrate a fresh database
    for i in range(ADDS):
        registry.add("evaluation", f"E{proc:02d}-run{i}", git_commit="", metrics={"i": float(i)})
        registry.set_metrics("D01", {f"p{proc}_{i}": float(i)})  # everyone updates one record


def _hammer(url: str) -> Registry:
    seed = Registry(url)
    seed.add("diagnostic", "D01", git_commit="")
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(url, p)) for p in range(PROCESSES)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    return seed


def _check(registry: Registry) -> None:
    evaluations = registry.records(kind="evaluation")
    assert len(evaluations) == PROCESSES * ADDS
    assert {r.id for r in evaluations} == {f"E{p:02d}-run{i}" for p in range(PROCESSES) for i in range(ADDS)}
    assert len(registry.get("D01").metrics) == PROCESSES * ADDS


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sqlite_concurrent_writers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    _check(_hammer(url))


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    admin = "postgresql://127.0.0.1:5432/test"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL reachable at {admin}: {exc}")
    name = f"lenscal_test_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://127.0.0.1:5432/{name}"
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_postgresql_concurrent_writers(postgres_url: str) -> None:
    registry = _hammer(postgres_url)
    _check(registry)
    registry.engine.dispose()
