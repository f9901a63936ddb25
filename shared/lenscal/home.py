"""The lenscal home directory (registry database, caches): $LENSCAL_HOME or ~/.lenscal."""

from __future__ import annotations

import os
from pathlib import Path


def lenscal_home() -> Path:
    home = Path(os.environ.get("LENSCAL_HOME", Path.home() / ".lenscal")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def config_search_path(kind: str) -> list[Path]:
    """Where named configs of ``kind`` (diagnostics, grids, injection, surveys, train) are
    looked up, first match wins:
    $LENSCAL_CONFIGS/<kind>, ./configs/<kind>, then lenscal's source tree (configs/<kind>)."""
    paths = []
    if os.environ.get("LENSCAL_CONFIGS"):
        paths.append(Path(os.environ["LENSCAL_CONFIGS"]) / kind)
    paths.append(Path.cwd() / "configs" / kind)
    paths.append(Path(__file__).resolve().parents[2] / "configs" / kind)
    unique: dict[Path, Path] = {}
    for path in paths:  # ./configs is the source tree's when run from the repository
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def find_config(kind: str, name_or_path: str | Path) -> Path | None:
    """A config file by path, or by name (``<name>.yaml``) on ``config_search_path(kind)``;
    None when neither exists."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    return next((c for d in config_search_path(kind) if (c := d / f"{name_or_path}.yaml").is_file()), None)


def locate_config(kind: str, name_or_path: str | Path, *, what: str, error: type[Exception]) -> Path:
    """``find_config``, or ``error`` saying where it looked."""
    path = find_config(kind, name_or_path)
    if path is None:
        looked = ", ".join(str(d) for d in config_search_path(kind))
        raise error(f"unknown {what} {str(name_or_path)!r}: not a file, and not in {looked}")
    return path


def read_yaml(path: str | Path, *, what: str, error: type[Exception]) -> dict:
    """The one YAML reader of lenscal's configs (grids, diagnostics, training, priors, survey
    settings, flow settings, registry snapshots): the file's top-level mapping; a missing,
    unreadable or non-mapping file is ``error`` naming it. Empty is an empty mapping."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} is a mapping of keys, not {type(raw).__name__}")
    return raw


def read_config(
    kind: str, name_or_path: str | Path, *, what: str, error: type[Exception]
) -> tuple[Path, dict]:
    """A named (or given) YAML config of ``kind``: its path and its top-level mapping."""
    path = locate_config(kind, name_or_path, what=what, error=error)
    return path, read_yaml(path, what=what, error=error)


FULL = "full"


def apply_preset(raw: dict, preset: str, *, source: str, error: type[Exception]) -> dict:
    """``raw`` (a config's mapping) at ``preset``: its ``presets`` section removed, and the
    chosen preset's keys merged over the top-level ones (dotted keys reach into sections:
    ``train.epochs: 3``). ``full`` is the config as written; an unknown preset is ``error``
    naming the config's presets. Grids, training configs and survey settings share this;
    diagnostics' presets choose steps (lenscal.diagnostics.config)."""
    raw = dict(raw)
    presets = raw.pop("presets", None) or {}
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise error(f"{source}: presets: a mapping of preset name to a mapping of keys")
    if preset == FULL:
        return raw
    if preset not in presets:
        known = ", ".join([FULL, *presets])
        raise error(f"{source}: preset {preset!r} is not one of its presets ({known})")
    return merge_dotted(raw, presets[preset])


def merge_dotted(raw: dict, changes: dict) -> dict:
    """``raw`` with ``changes`` merged in, a dotted key (``train.epochs``) reaching into
    sections: the one override rule of presets and ``--set section.key=value``."""
    raw = dict(raw)
    for key, value in changes.items():
        path = str(key).split(".")
        target = raw
        for name in path[:-1]:
            nested = target.get(name)
            target[name] = dict(nested) if isinstance(nested, dict) else {}
            target = target[name]
        target[path[-1]] = value
    return raw
