"""The deployments, declared here in version control and named after registry IDs (or grid
names): ``diagnostic/D01`` ... ``diagnostic/D06``, ``evaluate/E04-eval``, ``evaluate/E04-IM1``,
``evaluate/E04-IM2``, ``train/gen1`` ... ``train/paperIV_resnet18``, ``train/demo_resnet``,
``selection-grid/<grid>`` and ``score-survey/survey``: one per config file found in
configs/ (a new D07.yaml is a new deployment). Each runs on the ``lenscal`` work pool (process
workers: `lenscal worker`); ``lenscal deploy`` registers them all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lenscal.errors import LenscalError
from lenscal.home import config_search_path
from lenscal.registry.ids import kind_of

POOL = "lenscal"


class DeploymentError(LenscalError):
    """An unknown deployment or bad parameters for one (the message says which)."""


@dataclass(frozen=True)
class DeploymentSpec:
    flow_name: str  # the flow's Prefect name: diagnostic, evaluate, train, selection-grid, score-survey
    name: str  # the deployment's name: a registry ID or a grid name
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    def flow(self) -> Any:
        return FLOWS[self.flow_name]()


def _diagnostic() -> Any:
    from lenscal_flows.diagnostic import diagnostic_flow

    return diagnostic_flow


def _evaluate() -> Any:
    from lenscal_flows.diagnostic import evaluate_flow

    return evaluate_flow


def _train() -> Any:
    from lenscal_flows.train import train_flow

    return train_flow


def _grid() -> Any:
    from lenscal_flows.grid import selection_grid_flow

    return selection_grid_flow


def _survey() -> Any:
    from lenscal_flows.survey import score_survey_flow

    return score_survey_flow


FLOWS = {
    "diagnostic": _diagnostic,
    "evaluate": _evaluate,
    "train": _train,
    "selection-grid": _grid,
    "score-survey": _survey,
}


def _names(kind: str) -> list[str]:
    found: dict[str, None] = {}
    for directory in config_search_path(kind):
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, None)
    return list(found)


def all_deployments() -> list[DeploymentSpec]:
    specs = []
    for name in _names("diagnostics"):
        flow_name = "evaluate" if kind_of(name) == "evaluation" else "diagnostic"
        specs.append(
            DeploymentSpec(flow_name, name, {"definition": name}, f"{name} (configs/diagnostics/{name}.yaml)")
        )
    for name in _names("train"):
        specs.append(
            DeploymentSpec("train", name, {"config": name}, f"train {name} (configs/train/{name}.yaml)")
        )
    for name in _names("grids"):
        specs.append(
            DeploymentSpec("selection-grid", name, {"grid": name}, f"grid {name} (configs/grids/{name}.yaml)")
        )
    specs.append(DeploymentSpec("score-survey", "survey", {}, "score every cutout of a shard directory"))
    return specs


def find(ref: str) -> DeploymentSpec:
    """A deployment by ``flow/name`` or by a bare name (a registry ID such as D05)."""
    specs = all_deployments()
    for spec in specs:
        if ref in (spec.full_name, spec.name):
            return spec
    known = ", ".join(s.name for s in specs if s.flow_name != "selection-grid")
    raise DeploymentError(f"no deployment {ref!r}; known: {known} (and selection-grid/<grid>)")


def check_parameters(spec: DeploymentSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters a run of ``spec`` gets (its own, then ``given``), checked against the
    flow's signature and types, and, for definitions, their presets and steps."""
    import logging

    from prefect.exceptions import ParameterTypeError, SignatureMismatchError

    merged = {**spec.parameters, **given}
    flow = spec.flow()
    quiet = logging.getLogger("prefect.flows")
    level, quiet.level = quiet.level, logging.CRITICAL  # our message replaces Prefect's log line
    try:
        flow.validate_parameters(merged)
    except SignatureMismatchError:
        accepted = sorted(flow.parameters.properties)
        unknown = sorted(set(merged) - set(accepted))
        raise DeploymentError(
            f"{spec.full_name}: unknown parameter(s) {unknown}; it takes {accepted}"
        ) from None
    except ParameterTypeError as exc:
        raise DeploymentError(f"{spec.full_name}: {exc}".replace("\n", " ")) from None
    finally:
        quiet.level = level
    if spec.flow_name in ("diagnostic", "evaluate"):
        from lenscal.diagnostics.config import load_diagnostic, resolve

        resolve(load_diagnostic(merged["definition"]), merged.get("preset", "full"), merged.get("only"))
    if merged.get("preset", "full") not in ("full", "demo") and spec.flow_name != "diagnostic":
        raise DeploymentError(f"{spec.full_name}: preset {merged['preset']!r} is not full or demo")
    return merged


def register(pool: str = POOL) -> list[str]:
    """Create the work pool (process type) if missing and apply every deployment to it."""
    import asyncio
    import contextlib
    import io

    import prefect
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists

    async def ensure_pool() -> None:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))

    asyncio.run(ensure_pool())
    deployments = [
        spec.flow().to_deployment(
            name=spec.name,
            parameters=spec.parameters,
            description=spec.description,
            entrypoint_type=EntrypointType.MODULE_PATH,
            work_pool_name=pool,
        )
        for spec in all_deployments()
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints a table of every deployment
        prefect.deploy(
            *deployments,
            work_pool_name=pool,
            build=False,
            push=False,
            print_next_steps_message=False,
            ignore_warnings=True,
        )
    return [s.full_name for s in all_deployments()]
