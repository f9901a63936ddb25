"""Where flows find their services and data: a settings file (``$LENSCAL_HOME/flows.yaml``,
or ``$LENSCAL_FLOWS_CONFIG``; ``make demo`` writes one pointing at its outputs), overridden
by environment variables. A flow's own parameters override both.

    LENSCAL_SCORER_ENDPOINTS   host:port[,host:port...]  scorer replicas (none: start one locally)
    LENSCAL_INJECTOR_ENDPOINT  host:port                 injector (none: start one locally)
    LENSCAL_TOKEN_FILE         bearer token for the services
    LENSCAL_TLS_CA             PEM CA certificate of TLS services (none: plain TCP)
    LENSCAL_HOSTS              shard directory (hosts, validation split, lenses)
    LENSCAL_MANIFEST           training manifest
    LENSCAL_MODEL              bundle directory or training run ID
    LENSCAL_RESULTS            results root (default ./results)
    LENSCAL_DEVICE             auto | cpu | cuda for locally started services
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from lenscal.errors import LenscalError
from lenscal.home import lenscal_home, read_yaml
from lenscal.validation import validated

ENV = {
    "scorer_endpoints": "LENSCAL_SCORER_ENDPOINTS",
    "injector_endpoint": "LENSCAL_INJECTOR_ENDPOINT",
    "token_file": "LENSCAL_TOKEN_FILE",
    "tls_ca": "LENSCAL_TLS_CA",
    "hosts": "LENSCAL_HOSTS",
    "manifest": "LENSCAL_MANIFEST",
    "model": "LENSCAL_MODEL",
    "results": "LENSCAL_RESULTS",
    "device": "LENSCAL_DEVICE",
}


class SettingsError(LenscalError):
    """A flows settings file or variable that cannot be used (the message names it)."""


class FlowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scorer_endpoints: list[str] = Field(default_factory=list)
    injector_endpoint: str | None = None
    token_file: str | None = None
    tls_ca: str | None = None
    hosts: str | None = None
    manifest: str | None = None
    model: str | None = None
    results: str = "results"
    device: str = "auto"

    def need(self, key: str, value: str | None) -> str:
        """A flow parameter, else this setting, else an error saying how to set it."""
        chosen = value if value else getattr(self, key)
        if not chosen:
            raise SettingsError(
                f"{key}: not given; pass it as a flow parameter, set {ENV[key]}, or write it in "
                f"{settings_path()} (make demo writes one)"
            )
        return str(chosen)


def settings_path() -> Path:
    return Path(os.environ.get("LENSCAL_FLOWS_CONFIG") or lenscal_home() / "flows.yaml")


def load_settings() -> FlowSettings:
    path = settings_path()
    raw: dict[str, object] = (
        read_yaml(path, what="flows settings file", error=SettingsError) if path.is_file() else {}
    )
    for key, variable in ENV.items():
        value = os.environ.get(variable)
        if value:
            raw[key] = (
                [v.strip() for v in value.split(",") if v.strip()] if key == "scorer_endpoints" else value
            )
    return validated(FlowSettings, raw, error=SettingsError, source=str(path))


def write_settings(settings: FlowSettings, path: Path | None = None) -> Path:
    target = path or settings_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(settings.model_dump(exclude_defaults=True), sort_keys=False))
    return target
