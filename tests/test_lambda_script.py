"""deploy/lambda/setup-scorers.sh in --dry-run on a pretend two-GPU node: one scorer per GPU,
ports and GPUs one to one, health checks, TLS and a token required beyond loopback, the
endpoint list printed for the clients."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

SCRIPT = REPO / "deploy" / "lambda" / "setup-scorers.sh"


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: a)'\necho 'GPU 1: NVIDIA H100 (UUID: b)'\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_one_scorer_per_gpu_on_loopback(tmp_path: Path) -> None:
    run = run_script(tmp_path, "--model", "/models/gen5c", "--workers", "3")
    assert run.returncode == 0, run.stderr
    runs = [line for line in run.stdout.splitlines() if line.startswith("+ docker run")]
    assert len(runs) == 2
    for gpu, line in enumerate(runs):
        assert f"--gpus device={gpu}" in line and f"-p 127.0.0.1:{50051 + gpu}:50051" in line
        assert "--workers 3" in line and "--device cuda" in line and "lenscal.rpc.health" in line
    assert "LENSCAL_SCORER_ENDPOINTS=127.0.0.1:50051,127.0.0.1:50052" in run.stdout
    assert "docker build -f deploy/Dockerfile --target scorer --build-arg VARIANT=gpu" in run.stdout


def test_beyond_loopback_needs_tls_and_a_token(tmp_path: Path) -> None:
    run = run_script(tmp_path, "--model", "/m", "--bind", "0.0.0.0")
    assert run.returncode == 2 and "give --tls-cert, --tls-key and --token-file" in run.stderr
    secure = run_script(
        tmp_path, "--model", "/m", "--bind", "0.0.0.0",
        "--tls-cert", "/etc/l/cert.pem", "--tls-key", "/etc/l/key.pem", "--token-file", "/etc/l/token",
    )  # fmt: skip
    assert secure.returncode == 0, secure.stderr
    line = next(x for x in secure.stdout.splitlines() if x.startswith("+ docker run"))
    assert "-p 0.0.0.0:50051:50051" in line
    assert "--tls-cert /secrets/cert.pem --tls-key /secrets/key.pem --token-file /secrets/token" in line


@pytest.mark.parametrize(
    ("args", "message"), [((), "--model"), (("--model", "/m", "--workers", "0"), "--workers")]
)
def test_bad_options_are_named(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    run = run_script(tmp_path, *args)
    assert run.returncode == 2 and message in run.stderr
