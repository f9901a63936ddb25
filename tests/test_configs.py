"""Every shipped config (configs/<kind>/*.yaml) loads through its kind's loader at every
preset it declares, and every registered check is used by a shipped definition: nothing is
listed by hand, so a new file or check is covered the moment it exists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lenscal.diagnostics.base import CHECKS
from lenscal.diagnostics.config import load_diagnostic, resolve
from lenscal.home import FULL, config_search_path
from lenscal.injection.priors import get_prior
from lenscal.jobs.survey import load_survey_settings
from lenscal.selection.config import load_grid
from lenscal.training.config import load_config

from .conftest import REPO

CONFIGS = REPO / "configs"


def _diagnostic(path: Path, preset: str) -> Any:
    return resolve(load_diagnostic(path), preset)


#: The loader of each kind of config: (path, preset) -> the validated object.
LOADERS: dict[str, Callable[[Path, str], Any]] = {
    "diagnostics": _diagnostic,
    "grids": lambda path, preset: load_grid(path, preset),
    "train": lambda path, preset: load_config(path, preset=preset),
    "surveys": lambda path, preset: load_survey_settings(path, preset),
    "injection": lambda path, preset: get_prior(str(path)),
}
SHIPPED = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_config_folder_has_a_loader() -> None:
    folders = {p.name for p in CONFIGS.iterdir() if p.is_dir()}
    assert folders == set(LOADERS), f"configs/ has {sorted(folders)}; loaders for {sorted(LOADERS)}"


def _presets(path: Path) -> list[str]:
    raw = yaml.safe_load(path.read_text()) or {}
    return [FULL, *(raw.get("presets") or {})]


@pytest.mark.parametrize(
    ("path", "preset"),
    [(p, preset) for p in SHIPPED for preset in _presets(p)],
    ids=lambda v: v if isinstance(v, str) else f"{v.parent.name}/{v.stem}",
)
def test_every_shipped_config_loads_at_every_preset(path: Path, preset: str) -> None:
    assert LOADERS[path.parent.name](path, preset)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_is_found_by_name(path: Path) -> None:
    kind = path.parent.name
    assert any((d / path.name).resolve() == path.resolve() for d in config_search_path(kind))


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_every_registered_check_is_used_by_a_shipped_definition(check: str) -> None:
    used = {
        step.check
        for path in (CONFIGS / "diagnostics").glob("*.yaml")
        for step in resolve(load_diagnostic(path), FULL)
    }
    assert check in used, f"check {check!r} is registered but no configs/diagnostics/*.yaml runs it"
    assert CHECKS[check].description and CHECKS[check].description != check


def test_priors_by_name_are_the_files_on_the_search_path() -> None:
    team = get_prior("team_d01_d05")
    # the team's engine defaults of 2026-02-13 (dhs/injection_engine.py), by hand
    assert team.source_params.beta_frac_range == (0.1, 1.0)
    assert team.source_params.re_arcsec_range == (0.05, 0.50)
    assert team.source_params.clumps_prob == 0.6 and team.source_params.clump_model == "team"
    with pytest.raises(Exception, match="configs/injection"):
        get_prior("no_such_prior")
