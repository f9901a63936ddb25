"""Inference engines behind one interface. Each takes raw (or preprocessed) cutouts, applies
the given PreprocessSpec (the bundle's, or a per-request override of it) and returns float32
logits (+ embeddings). The one preprocessing definition is ``lenscal.preprocess`` in torch;
ONNX bundles carry it traced into ``model.raw.onnx``.

- ``torch`` (``lenscal.scoring.torch_engine``): the bundle's model; on CUDA bf16 autocast,
  channels_last, optional compile.
- ``onnx`` (``lenscal.scoring.onnx_engine``): ONNX Runtime (CUDA / TensorRT providers when
  present, else CPU); runs without torch for the bundle's own preprocessing.

Engines are imported when chosen, so a torch-free scorer never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Protocol

import numpy as np

from lenscal.bundle_files import BundleInfo
from lenscal.errors import LenscalError
from lenscal.preprocess_spec import PreprocessSpec


class Engine(Protocol):
    name: str
    device: str
    bundle: BundleInfo

    def infer(
        self, batch: np.ndarray, spec: PreprocessSpec | None, embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


#: Engine name -> "module:class" (imported on use).
ENGINES: dict[str, str] = {
    "torch": "lenscal.scoring.torch_engine:TorchEngine",
    "onnx": "lenscal.scoring.onnx_engine:OnnxEngine",
}
ENGINE_CHOICES = ("auto", *ENGINES)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a package that is present but cannot be imported
        return False


def choose_engine(kind: str, device: str) -> str:
    """``auto`` is the engine measured faster on the device: ONNX Runtime on a CPU (4.1x torch
    for the 195K ResNet on 2 cores, preprocessing included: docs/operations.md, "Benchmarks"), torch (bf16,
    channels_last) on CUDA; whichever of the two is installed when only one is."""
    if kind != "auto":
        if kind not in ENGINES:
            raise LenscalError(f"unknown engine {kind!r}; choose one of {list(ENGINE_CHOICES)}")
        return kind
    if not _installed("torch"):
        return "onnx"
    if not _installed("onnxruntime"):
        return "torch"
    from lenscal.device import resolve_device

    return "torch" if resolve_device(device).type == "cuda" else "onnx"


def make_engine(kind: str, bundle_dir: str, device: str = "auto", **kwargs: Any) -> Engine:
    chosen = choose_engine(kind, device)
    if chosen != "torch":
        kwargs.pop("compile", None)
    module, _, cls = ENGINES[chosen].partition(":")
    engine: Engine = getattr(importlib.import_module(module), cls)(bundle_dir, device, **kwargs)
    return engine
