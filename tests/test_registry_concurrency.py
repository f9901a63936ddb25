"""Many processes writing at once lose nothing: 8 processes x 50 adds plus shared updates,
on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import contextlib
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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_database_that_goes_away_and_comes_back_is_waited_for(postgres_url: str) -> None:
    """The registry's server restarts while a run records: its open connections die and new
    ones are refused for a while. The run's next write waits for the server (as in the
    compose smoke test, which restarts the PostgreSQL container mid-run) instead of failing;
    a wrong database fails at once."""
    import socket
    import threading
    import time

    import sqlalchemy.exc

    from lenscal.registry.store import Registry

    with socket.socket() as s:  # a port for a relay to the real server, down for a while
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = threading.Event()
    listening = threading.Event()
    live: list[socket.socket] = []

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for sock in (a, b):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def relay() -> None:
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.2)
            listening.set()
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(("127.0.0.1", 5432))
                live.extend((client, upstream))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    first = threading.Thread(target=relay, daemon=True)
    first.start()
    listening.wait(10)
    registry = Registry(url)
    registry.add("injection_model", "IM1")
    stop.set()  # "the server restarts": connections cut, new ones refused
    first.join(10)
    for sock in live:
        with contextlib.suppress(OSError):
            sock.close()
    stop.clear()
    listening.clear()
    back = threading.Timer(3.0, relay)  # back after 3 s
    back.start()
    started = time.monotonic()
    registry.add("injection_model", "IM2")  # waits for the server instead of failing
    assert time.monotonic() - started >= 2.5
    assert {r.id for r in registry.records()} >= {"IM1", "IM2"}
    stop.set()
    wrong = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    started = time.monotonic()
    with pytest.raises(sqlalchemy.exc.OperationalError, match="does not exist"):
        Registry(wrong)
    assert time.monotonic() - started < 10  # not retried: it will not come back
