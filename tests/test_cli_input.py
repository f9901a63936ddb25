"""Bad input at the command line is one line on stderr and exit status 2, never a traceback;
--dry-run checks the inputs a run would use; the documented TLS + token deployment works from
the command line and from a flow's clients; an unreachable endpoint fails after its connect
deadline, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import LENSCAL
from .servers import make_certificate, running_service


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lenscal.bundle_files import seal

    from .worlds import mock_shards, small_bundle

    root = tmp_path_factory.mktemp("cli")
    mock_shards(root, n=120)
    small_bundle(root / "finder")
    grid = (root / "finder").parent / "grids"
    grid.mkdir()
    axes = {"psf_fwhm": "{start: 1.0, stop: 1.6, step: 0.3}", "depth": "{start: 23.5, stop: 24.1, step: 0.3}"}
    for name, theta in (
        ("nan", "{start: 1.0, stop: .nan, step: 0.75}"),
        ("inf", "{start: 1.0, stop: .inf, step: 0.75}"),
        ("huge", "{start: 1.0, stop: 1.0e12, step: 0.75}"),
        ("tiny_step", "{start: 1.0, stop: 2.5, step: 1.0e-9}"),
    ):
        (grid / f"{name}.yaml").write_text(
            f"name: {name}\naxes:\n  theta_e: {theta}\n"
            + "".join(f"  {k}: {v}\n" for k, v in axes.items())
            + "per_cell: 2\n"
        )
    (grid / "malformed.yaml").write_text("name: [\n")
    # model.json edited and the bundle re-sealed, so only the shape check can catch it
    for name, change in (("no_provenance", {"provenance": {}}), ("bad_embedding", {"embedding_dim": "x"})):
        bundle = root / name
        subprocess.run(["cp", "-r", str(root / "finder"), str(bundle)], check=True)
        meta = json.loads((bundle / "model.json").read_text())
        (bundle / "model.json").write_text(json.dumps({**meta, **change}))
        seal(bundle)
    garbage = root / "garbage_weights"
    subprocess.run(["cp", "-r", str(root / "finder"), str(garbage)], check=True)
    (garbage / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(5000))
    seal(garbage)
    (root / "a_file").write_text("not a directory")
    return root


def _bad_inputs(w: Path) -> list[tuple[str, list[str], str]]:
    shards, finder, grids = str(w / "shards"), str(w / "finder"), w / "grids"
    grid = ["grid", "run", "--hosts", shards, "--model", finder, "--out", str(w / "o")]
    return [
        ("NaN axis", [*grid, "--grid", str(grids / "nan.yaml")], "finite number"),
        ("infinite axis", [*grid, "--grid", str(grids / "inf.yaml")], "finite number"),
        ("huge axis", [*grid, "--grid", str(grids / "huge.yaml")], "at most 1000 per axis"),
        ("tiny step", [*grid, "--grid", str(grids / "tiny_step.yaml")], "at most 1000 per axis"),
        ("malformed YAML", [*grid, "--grid", str(grids / "malformed.yaml")], "malformed.yaml"),
        ("negative count", [*grid, "--grid", "mock_demo", "--per-cell", "-1"], "--per-cell"),
        ("unknown option", [*grid, "--grid", "mock_demo", "--bogus", "1"], "--bogus"),
        ("--out is a file",
         ["grid", "run", "--grid", "mock_demo", "--hosts", shards, "--model", finder,
          "--out", str(w / "a_file")],
         "is a file, not a directory"),
        ("--out below a file",
         ["score", "--shards", shards, "--model", finder, "--out", str(w / "a_file" / "s.parquet")],
         "a_file"),
        ("missing hosts", ["grid", "run", "--grid", "mock_demo", "--hosts", "/no/such/dir", "--model", finder,
                           "--out", str(w / "o")], "/no/such/dir"),
        ("dry run, missing hosts",
         ["diagnose", "D05", "--hosts", "/no/such/dir", "--out", str(w / "x"), "--model", finder,
          "--dry-run"],
         "/no/such/dir"),
        ("dry run, missing model",
         ["diagnose", "D05", "--hosts", shards, "--out", str(w / "x"), "--model", str(w / "nothing"),
          "--dry-run", "--no-registry"], "nothing"),
        ("dry run, --out a file",
         ["diagnose", "D05", "--hosts", shards, "--out", str(w / "a_file"), "--model", finder, "--dry-run"],
         "is a file"),
        ("unknown diagnostic",
         ["diagnose", "D99", "--hosts", shards, "--out", str(w / "x"), "--model", finder], "D99"),
        ("unknown split", ["score-survey", "--shards", shards, "--model", finder, "--out", str(w / "sv"),
                           "--split", "nosuchsplit"], "nosuchsplit"),
        ("missing token file", ["score", "--shards", shards, "--scorer", "127.0.0.1:9", "--token-file",
                                "/no/token", "--out", str(w / "s.parquet")], "/no/token"),
        ("CA that is no certificate",
         ["score", "--shards", shards, "--scorer", "127.0.0.1:9", "--tls-ca", str(w / "a_file"),
          "--out", str(w / "s.parquet")], "no PEM certificate"),
        ("port out of range", ["serve", "scorer", "--model", finder, "--port", "70000"], "--port"),
        ("model.json without provenance",
         ["score", "--shards", shards, "--model", str(w / "no_provenance"), "--out", str(w / "s.parquet")],
         "provenance.weights_sha256"),
        ("model.json with a text embedding_dim",
         ["score", "--shards", shards, "--model", str(w / "bad_embedding"), "--out", str(w / "s.parquet")],
         "embedding_dim"),
        ("garbage weights, torch engine",
         ["serve", "scorer", "--model", str(w / "garbage_weights"), "--engine", "torch", "--port", "0"],
         "not weights of"),
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bad_input_is_one_line_and_exit_2(world: Path) -> None:
    """Every one of these was a traceback (or a silent success) before."""
    failures = []
    for name, args, expect in _bad_inputs(world):
        run = subprocess.run([*LENSCAL, *args], capture_output=True, text=True, timeout=120)
        lines = run.stderr.strip().splitlines()
        if run.returncode != 2 or len(lines) != 1 or "Traceback" in run.stderr or expect not in lines[0]:
            failures.append(f"{name}: exit {run.returncode}, stderr {run.stderr[-400:]!r}")
    assert not failures, "\n".join(failures)
    assert not (world / "sv" / "catalog.json").exists()  # the unknown split wrote no catalogue


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tls_and_token_from_the_command_line_and_a_flows_clients(world: Path, tmp_path: Path) -> None:
    key, cert = make_certificate(tmp_path)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    serve = ["scorer", "--model", str(world / "finder"), "--tls-cert", str(cert), "--tls-key", str(key)]
    score = [*LENSCAL, "score", "--shards", str(world / "shards"), "--out", str(tmp_path / "s.parquet")]
    env = {**os.environ, "LENSCAL_CONNECT_TIMEOUT_S": "3"}
    with running_service(*serve, "--token-file", str(token)) as (endpoint, _):
        ok = subprocess.run(
            [*score, "--scorer", endpoint, "--token-file", str(token), "--tls-ca", str(cert)],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert "120 cutouts scored" in ok.stdout
        by_env = subprocess.run(
            [*score, "--scorer", endpoint],
            capture_output=True, text=True, timeout=180,
            env={**env, "LENSCAL_TLS_CA": str(cert), "LENSCAL_TOKEN_FILE": str(token)},
        )  # fmt: skip
        assert by_env.returncode == 0, by_env.stderr
        started = time.monotonic()
        no_ca = subprocess.run(
            [*score, "--scorer", endpoint, "--token-file", str(token)],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert no_ca.returncode == 2 and "no connection within 3 s" in no_ca.stderr, no_ca.stderr
        assert len(no_ca.stderr.strip().splitlines()) == 1
        assert time.monotonic() - started < 60  # the connect deadline, not the 120 s call timeout
        no_token = subprocess.run(
            [*score, "--scorer", endpoint, "--tls-ca", str(cert)],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert no_token.returncode == 2 and "bearer token" in no_token.stderr, no_token.stderr
        # a flow's clients: the settings' token file and CA (LENSCAL_TOKEN_FILE, LENSCAL_TLS_CA)
        from lenscal_flows.services import Endpoints

        endpoints = Endpoints(
            [endpoint], "", "", token_file=str(token), tls_ca=str(cert), local=("injector",)
        )
        with endpoints.scorer_client() as scorer:
            scorer.wait_ready(timeout_s=60)
            cutouts = np.random.default_rng(1).normal(0, 0.01, (4, 3, 101, 101)).astype(np.float32)
            assert np.isfinite(scorer.score(cutouts).probabilities).all()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_unreachable_endpoint_fails_after_its_connect_deadline(world: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    run = subprocess.run(
        [*LENSCAL, "grid", "run", "--grid", "mock_demo", "--hosts", str(world / "shards"),
         "--scorer", f"127.0.0.1:{port}", "--out", str(tmp_path / "g")],
        capture_output=True, text=True, timeout=110, env={**os.environ, "LENSCAL_CONNECT_TIMEOUT_S": "2"},
    )  # fmt: skip
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert f"127.0.0.1:{port}: no connection within 2 s" in run.stderr
    assert time.monotonic() - started < 45  # start-up plus 2 s, not the 120 s wait of before
