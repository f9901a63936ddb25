"""Lens-finder architectures behind one registry: ``create_model(name, **kwargs)``."""

from lenscal.models.registry import MODELS, LensFinder, ModelError, create_model, parameter_count

__all__ = ["MODELS", "LensFinder", "ModelError", "create_model", "parameter_count"]
