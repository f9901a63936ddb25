"""lenscal.rpc.service's table is the one list of gRPC services: pyproject's entry points,
the compose stack and the generated code all agree with it, and each servicer stays a thin
adapter (<= 150 lines)."""

from __future__ import annotations

import importlib
import tomllib

import pytest
import yaml

from lenscal.rpc.service import SERVICES

from .conftest import REPO


def test_pyproject_serves_exactly_the_table() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serve = project["entry-points"]["lenscal.serve"]
    assert serve == {name: spec.entry_point for name, spec in SERVICES.items()}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_runs_each_service_on_its_port(name: str) -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    service = compose["services"][name]
    spec = SERVICES[name]
    assert "--port" in service["command"] and str(spec.port) in service["command"]
    assert f"127.0.0.1:{spec.port}:{spec.port}" in service["ports"]
    assert service["build"]["target"] == name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_is_in_its_generated_code(name: str) -> None:
    spec = SERVICES[name]
    pb2 = importlib.import_module(spec.pb2)
    full_name = pb2.DESCRIPTOR.services_by_name[spec.service].full_name
    assert full_name == f"lenscal.{name}.v1.{spec.service}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_servicers_are_thin(name: str) -> None:
    path = REPO / "services" / name / SERVICES[name].package / "servicer.py"
    lines = len(path.read_text().splitlines())
    assert lines <= 150, f"{path.name} of {name}: {lines} lines; move rules into the core or lenscal.rpc"
