"""Prefect flows and deployments against real Prefect server processes, real lenscal
services and (for fan-out) a real local Dask cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import LENSCAL

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A mock survey in shards, an (untrained) 195K-style ResNet bundle with its ONNX, a
    flows settings file pointing at them, a registry and a results root, all under one home."""
    from .worlds import mock_shards, small_bundle

    root = tmp_path_factory.mktemp("flows")
    mock_shards(root, n=300, positive_fraction=0.2)
    bundle = small_bundle(root / "resnet-gen9")
    small_bundle(root / "resnet-gen8", run_id="resnet-gen8", seed=11)  # a second finder (A/B)
    settings = root / "flows.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "hosts": str(root / "shards"),
                "model": str(bundle),
                "results": str(root / "results"),
                "device": "cpu",
            }
        )
    )
    return {
        "root": root,
        "bundle": bundle,
        "settings": settings,
        "shards": root / "shards",
        "registry": root / "registry.sqlite",
        "home": root / "home",
    }


def _env(world: dict[str, Path], **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "LENSCAL_HOME": str(world["home"]),
        "LENSCAL_FLOWS_CONFIG": str(world["settings"]),
        "LENSCAL_REGISTRY_URL": f"sqlite:///{world['registry']}",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        **extra,
    }


@pytest.fixture()
def flow_env(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    for key, value in _env(world).items():
        if key.startswith(("LENSCAL_", "PREFECT_WORKER")):
            monkeypatch.setenv(key, value)
    return world


@pytest.fixture(scope="module")
def server(world: dict[str, Path]) -> Iterator[str]:
    """A real Prefect server (SQLite) on 127.0.0.1 and a `lenscal worker` polling it."""
    from lenscal_flows.local import prefect_server

    saved = {
        k: os.environ.get(k)
        for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")
    }
    with prefect_server(home=world["root"] / "prefect") as url:
        deployed = subprocess.run(
            [*LENSCAL, "deploy"],
            env=_env(world, PREFECT_API_URL=url),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deployed.returncode == 0 and "diagnostic/D05" in deployed.stdout, deployed.stderr
        worker = subprocess.Popen(
            [*LENSCAL, "worker"],
            env=_env(world, PREFECT_API_URL=url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            yield url
        finally:
            # As lenscal stops its own workers (lenscal.rpc.launch.stop_process): SIGTERM, then
            # SIGKILL after a grace period. Prefect's worker sometimes keeps idling in its
            # poll loop after SIGTERM (seen in the full suite, py-spy: no flow run in hand).
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=60)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# --- lenscal run: resolution and validation (no server needed) ---------------------------------


def test_lenscal_run_refuses_an_unknown_id_and_a_bad_parameter(flow_env: dict[str, Path]) -> None:
    unknown = subprocess.run([*LENSCAL, "run", "D42"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "no deployment 'D42'" in unknown.stderr and "D05" in unknown.stderr
    typo = subprocess.run(
        [*LENSCAL, "run", "D05", "--param", "prest=demo"], capture_output=True, text=True, timeout=120
    )
    assert typo.returncode == 2 and "unknown parameter(s) ['prest']" in typo.stderr
    preset = subprocess.run(
        [*LENSCAL, "run", "D05", "--param", "preset=huge"], capture_output=True, text=True, timeout=120
    )
    assert preset.returncode == 2 and "unknown preset 'huge'" in preset.stderr
    typed = subprocess.run(
        [*LENSCAL, "run", "selection-grid/mock_demo", "--param", "per_cell=many"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert typed.returncode == 2 and "per_cell" in typed.stderr


def test_every_config_is_a_deployment_named_after_its_id() -> None:
    from lenscal_flows.deployments import all_deployments, find

    names = {d.full_name for d in all_deployments()}
    assert {f"diagnostic/D0{i}" for i in range(1, 7)} <= names
    assert {
        "evaluate/E04-eval",
        "evaluate/E04-IM1",
        "evaluate/E04-IM2",
        "train/gen5a",
        "train/resnet-gen1",
        "train/paperIV_resnet18",
        "selection-grid/d05",
        "selection-compare/d05",
        "score-survey/survey",
    } <= names
    assert find("D05").full_name == "diagnostic/D05" and find("E04-IM1").flow_name == "evaluate"


def test_selection_compare_needs_both_finders_and_a_known_preset() -> None:
    from lenscal.errors import LenscalError
    from lenscal_flows.deployments import DeploymentError, check_parameters, find

    spec = find("selection-compare/mock_demo")
    with pytest.raises(DeploymentError, match="model_b: Field required"):
        check_parameters(spec, {"model_a": "demo_resnet"})
    with pytest.raises(LenscalError, match="preset 'nope'"):
        check_parameters(spec, {"model_a": "a", "model_b": "b", "preset": "nope"})
    assert check_parameters(spec, {"model_a": "a", "model_b": "b"})["grid"] == "mock_demo"


def test_transient_errors_are_retried_and_others_are_not() -> None:
    from prefect.states import Failed

    from lenscal.errors import NotReadyError, OverloadedError, RequestError
    from lenscal_flows.common import transient

    for error, retried in (
        (NotReadyError("x"), True),
        (OverloadedError("x", 1.0), True),
        (TimeoutError("x"), True),
        (RequestError("batch", "bad"), False),
        (ValueError("bug"), False),
    ):
        assert transient(None, None, Failed(data=error)) is retried


# --- flows in a test harness: artifacts, naming, registry, Dask fan-out -------------------------


@pytest.mark.slow
def test_flows_in_the_test_harness_with_a_dask_cluster(flow_env: dict[str, Path], tmp_path: Path) -> None:
    from dask.distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from lenscal.registry.store import Registry
    from lenscal_flows.diagnostic import diagnostic_flow
    from lenscal_flows.grid import selection_grid_flow
    from lenscal_flows.selection_compare import selection_compare_flow
    from lenscal_flows.survey import score_survey_flow

    definition = tmp_path / "D77.yaml"
    definition.write_text(
        "id: D77\ndescription: harness\nsteps:\n  - {name: leakage, check: healpix_leakage}\n"
        "  - {name: recall, check: tier_recall, params: {force_fpr: true}}\n"
    )
    with prefect_test_harness(server_startup_timeout=240):
        out = Path(diagnostic_flow(definition=str(definition)))
        assert out.name.startswith("D77_") and out.name.endswith("_full") and (out / "report.md").is_file()
        record = Registry().get("D77")
        assert record.status == "Complete" and record.metrics["leakage.leaked_pixels"] == 0
        again = Path(diagnostic_flow(definition=str(definition)))
        assert again == out  # the same run: its directory is reused, its steps too

        threads = Path(
            selection_grid_flow(
                grid="mock_demo",
                per_cell=3,
                out=str(tmp_path / "threads"),
                chunk_size=8,
                workers=2,
                force_fpr=True,
            )
        )
        # Dask's nanny writes OMP_NUM_THREADS=1 (and friends) into this process's environment
        # for its workers and never takes it back: restored below, so later tests' child
        # processes (a training subprocess) keep the default thread count.
        environ = dict(os.environ)
        try:
            with LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster:
                dask = Path(
                    selection_grid_flow(
                        grid="mock_demo",
                        per_cell=3,
                        out=str(tmp_path / "dask"),
                        chunk_size=8,
                        dask_address=cluster.scheduler_address,
                        force_fpr=True,
                    )
                )
        finally:
            os.environ.clear()
            os.environ.update(environ)

        # score-survey: parts over two threads; a lost part is scored again, alone.
        survey_dir = tmp_path / "survey"
        catalogue = Path(score_survey_flow(out=str(survey_dir), preset="demo", workers=2))
        first = pd.read_parquet(catalogue / "parts")
        n_rows = len(pd.read_parquet(flow_env["shards"] / "manifest.parquet"))
        assert len(first) == n_rows and sorted(first["row"]) == list(range(n_rows))
        assert json.loads((catalogue / "catalog.json").read_text())["complete"] is True
        (survey_dir / "parts" / "part-00001.parquet").unlink()
        kept = (survey_dir / "parts" / "part-00000.parquet").stat().st_mtime_ns
        again = pd.read_parquet(
            Path(score_survey_flow(out=str(survey_dir), preset="demo", workers=2)) / "parts"
        )
        assert (survey_dir / "parts" / "part-00000.parquet").stat().st_mtime_ns == kept  # not redone
        pd.testing.assert_frame_equal(first.sort_values("row"), again.sort_values("row"))
        assert (catalogue / "candidates.parquet").is_file() and (catalogue / "candidates.png").is_file()

        # selection-compare: both finders through one grid (each its own scorer), then paired
        compared = Path(
            selection_compare_flow(
                grid="mock_demo", model_a=str(flow_env["bundle"]),
                model_b=str(flow_env["root"] / "resnet-gen8"), per_cell=3, out=str(tmp_path / "ab"),
                workers=1, chunk_size=16, force_fpr=True,
            )
        )  # fmt: skip
        finders = json.loads((compared / "finders.json").read_text())
        assert "for paired proportions" in finders["method"] and finders["pairing"].startswith(
            "paired: the same 81"
        )
        assert (finders["a"]["model"], finders["b"]["model"]) == ("resnet-gen9", "resnet-gen8")
        assert (compared / "finders.png").is_file() and (tmp_path / "ab" / "finder-b" / "cells.csv").is_file()
    a, b = pd.read_parquet(threads / "injections.parquet"), pd.read_parquet(dask / "injections.parquet")
    assert len(a) == 27 * 3 and a["number"].is_unique
    pd.testing.assert_frame_equal(
        a.drop(columns=["logit", "probability"]), b.drop(columns=["logit", "probability"])
    )
    assert (a["logit"] - b["logit"]).abs().max() < 1e-3  # float16 on the wire both times


# --- deployments on a real server through the CLI ------------------------------------------------


@pytest.mark.slow
def test_prefect_deployment_run_d05_watch_completes(server: str, world: dict[str, Path]) -> None:
    env = _env(world, PREFECT_API_URL=server)
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "prefect"),
            "deployment",
            "run",
            "diagnostic/D05",
            "--params",
            json.dumps({"preset": "demo"}),
            "--watch",
            "--watch-timeout",
            "600",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=700,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Completed" in run.stdout
    results = sorted((world["root"] / "results").glob("D05_*_demo"))
    assert (
        results
        and (results[-1] / "report.md").is_file()
        and (results[-1] / "bright_arc" / "bright_arc.png").is_file()
    )
    from lenscal.registry.store import Registry

    # a demo run is recorded as D05_<YYYYMMDD>_demo, never under the team's D05
    registry = Registry(f"sqlite:///{world['registry']}")
    demo = [r for r in registry.records(kind="diagnostic") if re.fullmatch(r"D05_\d{8}_demo", r.id)]
    assert len(demo) == 1 and not registry.exists("D05")
    record = demo[0]
    assert record.status == "Complete" and record.metrics["grid_no_poisson.completeness.p>=0.5.n"] == 27 * 4
    metrics = json.loads((results[-1] / "metrics.json").read_text())
    assert metrics["bright_arc"]["gain_1e12.vs_baseline.p>=0.5.identical"] is True

    # The bare registry ID through `lenscal run`: exit code 0 on Completed (the run reuses every step).
    bare = subprocess.run(
        [*LENSCAL, "run", "D05", "--param", "preset=demo", "--watch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bare.returncode == 0, bare.stdout[-3000:] + bare.stderr[-3000:]
    assert str(results[-1]) in bare.stdout


@pytest.mark.slow
def test_kill_9_of_the_flow_mid_grid_then_rerun_scores_every_injection_once(
    server: str, world: dict[str, Path], tmp_path: Path
) -> None:
    env = _env(world, PREFECT_API_URL=server)
    out = tmp_path / "grid"
    code = (
        "from lenscal_flows.grid import selection_grid_flow; "
        f"selection_grid_flow(grid='mock_demo', per_cell=12, chunk_size=4, workers=1, out={str(out)!r}, "
        "force_fpr=True)"
    )
    flow = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and flow.poll() is None:
        if len(list((out / "parts").glob("part-*.parquet"))) >= 10:
            break
        time.sleep(0.1)
    flow.send_signal(signal.SIGKILL)
    flow.wait()
    assert 10 <= len(list((out / "parts").glob("part-*.parquet"))) < 81, "the kill should land mid-grid"
    # The services it started watch it through a pidfd and stop: waited for by process table,
    # with a deadline generous for a loaded machine (no fixed sleep to lose a race against).
    killed_at = time.monotonic()
    leftover = _services_of(flow.pid)
    while leftover and time.monotonic() - killed_at < 120:
        time.sleep(0.1)
        leftover = _services_of(flow.pid)
    assert not leftover, f"services outlived the killed flow by 120 s: {leftover}"
    rerun = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    table = pd.read_parquet(out / "injections.parquet")
    assert len(table) == 27 * 12 and table["number"].is_unique


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_lenscal_run_leaves_no_server_worker_or_service(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """`lenscal run` without PREFECT_API_URL starts a Prefect server and worker (supervised),
    whose flow run starts a scorer and an injector. kill -9 of `lenscal run` mid-run: every
    process of that tree ends (found by process tree, waited for with a generous deadline)."""
    env = _env(world, LENSCAL_RESULTS=str(tmp_path / "results"))
    env.pop("PREFECT_API_URL", None)
    run = subprocess.Popen(
        [*LENSCAL, "run", "D05", "--param", "preset=demo", "--param", f"out={tmp_path / 'd05'}", "--watch"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    tree: set[int] = set()
    while time.monotonic() < deadline and run.poll() is None:
        tree = _descendants(run.pid)
        if any(_environ_has(Path(f"/proc/{p}"), f"LENSCAL_EXIT_WITH_PID={q}") for p in tree for q in tree):
            break  # the flow run has started its services: server, worker, flow, services all up
        time.sleep(0.2)
    assert run.poll() is None, "the run ended before its services started"
    tree = _descendants(run.pid)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < 180 and any(_alive(p) for p in tree):
        time.sleep(0.2)
    left = [_cmdline(p) for p in tree if _alive(p)]
    assert not left, f"outlived the killed run by 180 s: {left}"


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _services_of(pid: int) -> list[Path]:
    """Live processes started with LENSCAL_EXIT_WITH_PID=pid (zombies are gone already)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and _environ_has(p, f"LENSCAL_EXIT_WITH_PID={pid}"):
            try:
                state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                found.append(p)
    return found


def _environ_has(proc: Path, entry: str) -> bool:
    try:
        return entry.encode() in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


@pytest.mark.slow
def test_a_scorer_killed_mid_run_is_retried_until_it_is_back(
    server: str, world: dict[str, Path], tmp_path: Path
) -> None:
    from lenscal.rpc.launch import running_service

    port = _free_port()
    with running_service("injector") as (injector_at, _):
        env = _env(
            world,
            PREFECT_API_URL=server,
            LENSCAL_SCORER_ENDPOINTS=f"127.0.0.1:{port}",
            LENSCAL_INJECTOR_ENDPOINT=injector_at,
        )
        out = tmp_path / "grid"
        code = (
            "from lenscal_flows.grid import selection_grid_flow; "
            f"selection_grid_flow(grid='mock_demo', per_cell=12, chunk_size=4, workers=1, out={str(out)!r}, "
            "force_fpr=True)"
        )
        with running_service("scorer", "--model", str(world["bundle"]), port=port) as (_, scorer):
            flow = subprocess.Popen(
                [sys.executable, "-c", code],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and len(list((out / "parts").glob("part-*.parquet"))) < 8:
                time.sleep(0.1)
            scorer.send_signal(signal.SIGKILL)
        time.sleep(8)  # longer than the client's own retries: the task fails and Prefect retries it
        with running_service("scorer", "--model", str(world["bundle"]), port=port):
            output, _ = flow.communicate(timeout=600)
    assert flow.returncode == 0, output[-4000:]
    assert "Retry" in output or "retry" in output
    table = pd.read_parquet(out / "injections.parquet")
    assert len(table) == 27 * 12 and table["number"].is_unique


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def two_postgres_databases() -> Iterator[tuple[str, str]]:
    import psycopg

    admin = "postgresql://127.0.0.1:5432/test"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # the machines and CI run PostgreSQL: its absence is a failure
        pytest.fail(f"team mode needs PostgreSQL at {admin} (trust auth): {exc}")
    import uuid

    names = [f"lenscal_{what}_{uuid.uuid4().hex[:8]}" for what in ("prefect", "registry")]
    for name in names:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield (f"postgresql+asyncpg://127.0.0.1:5432/{names[0]}", f"postgresql://127.0.0.1:5432/{names[1]}")
    finally:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


@pytest.mark.slow
def test_team_mode_prefect_and_registry_on_postgresql(
    world: dict[str, Path], tmp_path: Path, two_postgres_databases: tuple[str, str]
) -> None:
    """Prefect's database and the registry on PostgreSQL: a server on it, a grid run through
    `lenscal run` (which starts a worker, none being online), the record in the registry."""
    from lenscal.registry.store import Registry
    from lenscal_flows.local import prefect_server

    prefect_db, registry_db = two_postgres_databases
    saved = {
        k: os.environ.get(k)
        for k in (
            "PREFECT_API_URL",
            "PREFECT_HOME",
            "PREFECT_API_DATABASE_CONNECTION_URL",
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE",
        )
    }
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_db
    try:
        with prefect_server(home=tmp_path / "prefect") as url:
            env = _env(
                world,
                PREFECT_API_URL=url,
                LENSCAL_REGISTRY_URL=registry_db,
                PREFECT_API_DATABASE_CONNECTION_URL=prefect_db,
            )
            run = subprocess.run(
                [
                    *LENSCAL,
                    "run",
                    "selection-grid/mock_demo",
                    "--param",
                    "per_cell=2",
                    "--param",
                    "run_id=E93-pg",
                    "--param",
                    "force_fpr=true",
                    "--param",
                    f"out={tmp_path / 'grid'}",
                    "--watch",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    record = Registry(registry_db).get("E93-pg")
    assert record.status == "Complete" and record.metrics["completeness.p>=0.5.n"] == 27 * 2
    assert {p["role"] for p in record.parents} >= {"injection_model"}
