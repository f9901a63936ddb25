"""Lens-finder architectures behind one registry: ``create_model(name, **kwargs)``.

Every module of this package that registers an entrypoint is imported here, so adding an
architecture is adding one file."""

import importlib
import pkgutil

from lenscal.models.architectures import (
    MODELS,
    Architecture,
    LensFinder,
    ModelError,
    architecture,
    check_model_args,
    create_model,
    parameter_count,
)

_SUPPORT = {"architectures", "bundle", "predict", "cli"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "MODELS",
    "Architecture",
    "LensFinder",
    "ModelError",
    "architecture",
    "check_model_args",
    "create_model",
    "parameter_count",
]
