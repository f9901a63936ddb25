"""The deployments, declared here in version control and named after registry IDs (or grid
names): ``diagnostic/D01`` ... ``diagnostic/D07``, ``evaluate/E04-eval``, ``evaluate/E04-IM1``,
``evaluate/E04-IM2``, ``train/gen1`` ... ``train/paperIV_resnet18``, ``train/demo_resnet``,
``selection-grid/<grid>``, ``selection-compare/<grid>`` (two finders through one grid:
parameters model_a and model_b) and ``score-survey/survey``: one per config file found in
configs/ (a new D07.yaml is a new deployment). Each runs on the ``lenscal`` work pool (process
workers: `lenscal worker`); ``lenscal deploy`` registers them all.

Training can instead run in its own container: with ``LENSCAL_TRAIN_POOL`` set (the compose
stack sets ``lenscal-docker``), ``train/*`` go to that Docker work pool (prefect-docker), whose
worker starts the trainer image for each run with the data, checkpoint, results and registry
volumes mounted (and every GPU when ``LENSCAL_TRAIN_GPU=1``): see ``DockerJobs``."""

from __future__ import annotations

import os
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


def _selection_compare() -> Any:
    from lenscal_flows.selection_compare import selection_compare_flow

    return selection_compare_flow


def _survey() -> Any:
    from lenscal_flows.survey import score_survey_flow

    return score_survey_flow


FLOWS = {
    "diagnostic": _diagnostic,
    "evaluate": _evaluate,
    "train": _train,
    "selection-grid": _grid,
    "selection-compare": _selection_compare,
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
        specs.append(
            DeploymentSpec(
                "selection-compare", name, {"grid": name},
                f"two finders (model_a, model_b) through grid {name}, compared injection by injection",
            )
        )  # fmt: skip
    specs.append(DeploymentSpec("score-survey", "survey", {}, "score every cutout of a shard directory"))
    return specs


def find(ref: str) -> DeploymentSpec:
    """A deployment by ``flow/name`` or by a bare name (a registry ID such as D05)."""
    specs = all_deployments()
    for spec in specs:
        if ref in (spec.full_name, spec.name):
            return spec
    known = ", ".join(s.name for s in specs if s.flow_name not in ("selection-grid", "selection-compare"))
    raise DeploymentError(
        f"no deployment {ref!r}; known: {known} (and selection-grid/<grid>, selection-compare/<grid>)"
    )


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
    PRESET_CHECKS[spec.flow_name](merged)
    return merged


def _check_definition(parameters: dict[str, Any]) -> None:
    from lenscal.diagnostics.config import load_diagnostic, resolve

    resolve(
        load_diagnostic(parameters["definition"]), parameters.get("preset", "full"), parameters.get("only")
    )


def _check_train(parameters: dict[str, Any]) -> None:
    from lenscal.training.config import load_config

    load_config(
        parameters["config"], preset=parameters.get("preset", "full"), overrides=parameters.get("overrides")
    )


def _check_grid(parameters: dict[str, Any]) -> None:
    from lenscal.selection.config import load_grid

    load_grid(parameters["grid"], parameters.get("preset", "full"))


def _check_survey(parameters: dict[str, Any]) -> None:
    from lenscal.jobs.survey import load_survey_settings

    load_survey_settings(parameters.get("settings", "dr10"), parameters.get("preset", "full"))


#: Each flow's presets live in its configs' YAML: a run's preset (and definition, steps,
#: overrides) is checked there before it is submitted.
PRESET_CHECKS = {
    "diagnostic": _check_definition,
    "evaluate": _check_definition,
    "train": _check_train,
    "selection-grid": _check_grid,
    "selection-compare": _check_grid,
    "score-survey": _check_survey,
}


#: Volumes a training job mounts: the compose stack's named volumes, at the same paths.
TRAIN_VOLUMES = (
    "lenscal-data:/data",
    "lenscal-checkpoints:/checkpoints",
    "lenscal-results:/results",
    "lenscal-registry:/registry",
)


@dataclass(frozen=True)
class DockerJobs:
    """train/* as containers: a Docker work pool and what each job container gets.

    LENSCAL_TRAIN_POOL     the Docker work pool (unset: training runs on the process pool)
    LENSCAL_TRAIN_IMAGE    the trainer image (default lenscal/trainer:latest)
    LENSCAL_TRAIN_NETWORK  Docker network of the Prefect server (default lenscal)
    LENSCAL_TRAIN_VOLUMES  comma-separated volume:path mounts (default TRAIN_VOLUMES)
    LENSCAL_TRAIN_GPU      1: the job reserves every GPU (the gpu profile)
    The job container gets the registering process's other LENSCAL_* variables (settings,
    registry URL), so a job sees what the flows worker sees."""

    pool: str
    image: str = "lenscal/trainer:latest"
    network: str = "lenscal"
    volumes: tuple[str, ...] = TRAIN_VOLUMES
    gpu: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> DockerJobs | None:
        pool = os.environ.get("LENSCAL_TRAIN_POOL")
        if not pool:
            return None
        volumes = os.environ.get("LENSCAL_TRAIN_VOLUMES")
        gpu = os.environ.get("LENSCAL_TRAIN_GPU", "0").strip().lower()
        if gpu not in ("0", "1", "true", "false", ""):
            raise DeploymentError(f"LENSCAL_TRAIN_GPU: {gpu!r} is not 0 or 1")
        return cls(
            pool=pool,
            image=os.environ.get("LENSCAL_TRAIN_IMAGE") or cls.image,
            network=os.environ.get("LENSCAL_TRAIN_NETWORK") or cls.network,
            volumes=tuple(v.strip() for v in volumes.split(",") if v.strip()) if volumes else TRAIN_VOLUMES,
            gpu=gpu in ("1", "true"),
            env={
                k: v
                for k, v in os.environ.items()
                if k.startswith("LENSCAL_") and not k.startswith("LENSCAL_TRAIN_")
            },
        )

    def job_variables(self) -> dict[str, Any]:
        variables: dict[str, Any] = {
            "image": self.image,
            "image_pull_policy": "IfNotPresent",  # images are built on the node, not pulled
            "networks": [self.network],
            "volumes": list(self.volumes),
            "env": self.env,
            "auto_remove": True,
        }
        if self.gpu:  # docker-py turns the dict into a DeviceRequest: every GPU, like --gpus all
            variables["container_create_kwargs"] = {
                "device_requests": [{"count": -1, "capabilities": [["gpu"]]}]
            }
        return variables


def pool_for(spec: DeploymentSpec, pool: str, jobs: DockerJobs | None) -> tuple[str, dict[str, Any]]:
    """(work pool, job variables) of one deployment."""
    if jobs is not None and spec.flow_name == "train":
        return jobs.pool, jobs.job_variables()
    return pool, {}


def register(pool: str = POOL) -> list[str]:
    """Create the work pools if missing (``pool``: process type; the Docker pool of
    ``DockerJobs`` when configured) and apply every deployment to its pool."""
    import asyncio
    import contextlib
    import io

    import prefect
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists

    jobs = DockerJobs.from_env()

    async def ensure_pools() -> None:
        pools = [WorkPoolCreate(name=pool, type="process")]
        if jobs is not None:
            from prefect_docker.worker import DockerWorker

            template = DockerWorker.get_default_base_job_template()
            pools.append(WorkPoolCreate(name=jobs.pool, type="docker", base_job_template=template))
        async with get_client() as client:
            for create in pools:
                with contextlib.suppress(ObjectAlreadyExists):
                    await client.create_work_pool(create)

    asyncio.run(ensure_pools())
    specs = all_deployments()
    for target in {pool_for(spec, pool, jobs)[0] for spec in specs}:
        deployments = []
        for spec in specs:
            spec_pool, variables = pool_for(spec, pool, jobs)
            if spec_pool != target:
                continue
            deployments.append(
                spec.flow().to_deployment(
                    name=spec.name,
                    parameters=spec.parameters,
                    description=spec.description,
                    entrypoint_type=EntrypointType.MODULE_PATH,
                    work_pool_name=target,
                    job_variables=variables,
                )
            )
        with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints a table of every deployment
            prefect.deploy(
                *deployments,
                work_pool_name=target,
                build=False,
                push=False,
                print_next_steps_message=False,
                ignore_warnings=True,
            )
    return [s.full_name for s in specs]
