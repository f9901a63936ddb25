"""Lens-finder architectures behind one registry: ``create_model(name, **kwargs)``.

The modules that register architectures are listed here by name (as the diagnostics
package lists its checks): adding an architecture is one file plus one line below."""

from lenscal.models import efficientnet, resnet, resnet18  # noqa: F401  (registration)
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
