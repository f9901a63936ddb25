"""Inference engines behind one interface. Both take raw (or preprocessed) cutouts, apply
the given PreprocessSpec (the bundle's, or a per-request override of it) through the one
shared ``preprocess`` in torch, and return float32 logits (+ embeddings).

- ``torch``: the bundle's model; on CUDA bf16 autocast, channels_last, optional compile.
- ``onnx``: ONNX Runtime on the bundle's ``model.onnx`` (CUDA / TensorRT providers when
  present, else CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from lenscal.device import resolve_device
from lenscal.errors import LenscalError
from lenscal.models.bundle import ONNX, Bundle, BundleError, export_onnx, load_bundle
from lenscal.models.predict import predict
from lenscal.preprocess import PreprocessSpec, preprocess


class Engine(Protocol):
    name: str
    device: str
    bundle: Bundle

    def infer(
        self, batch: np.ndarray, spec: PreprocessSpec | None, embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


class TorchEngine:
    name = "torch"

    def __init__(
        self, bundle_dir: str, device: str = "auto", *, amp: bool = True, compile: bool = False
    ) -> None:
        dev = resolve_device(device)
        self.device = str(dev)
        self.bundle = load_bundle(bundle_dir, device=dev)
        self.amp = amp
        if dev.type == "cuda":
            self.bundle.model.to(memory_format=torch.channels_last)
        self.model: Any = torch.compile(self.bundle.model) if compile else self.bundle.model

    def infer(
        self, batch: np.ndarray, spec: PreprocessSpec | None, embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        tensor = torch.from_numpy(np.ascontiguousarray(batch))
        if self.device.startswith("cuda"):
            tensor = tensor.pin_memory()
        logits, emb = predict(
            self.bundle.model if embeddings else self.model,
            tensor,
            spec,
            amp=self.amp,
            return_embeddings=embeddings,
        )
        return logits.cpu().numpy(), None if emb is None else emb.cpu().numpy()


class OnnxEngine:
    name = "onnx"

    def __init__(self, bundle_dir: str, device: str = "auto") -> None:
        import onnxruntime as ort

        dev = resolve_device(device)
        self.bundle = load_bundle(bundle_dir)
        path = self.bundle.path / ONNX
        if not path.is_file():
            export_onnx(self.bundle.path)
        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if dev.type == "cuda":
            wanted = [
                p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available
            ] + wanted
        try:
            self.session = ort.InferenceSession(str(path), providers=wanted)
        except Exception as exc:  # onnxruntime raises its own types for a file it cannot use
            raise BundleError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
        self.device = (
            "cuda" if any(p != "CPUExecutionProvider" for p in self.session.get_providers()) else "cpu"
        )

    def infer(
        self, batch: np.ndarray, spec: PreprocessSpec | None, embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.from_numpy(np.ascontiguousarray(batch)).float()
        if spec is not None:
            x = preprocess(x, spec)
        outputs = ["logits", "embeddings"] if embeddings else ["logits"]
        result = self.session.run(outputs, {"cutouts": x.numpy()})
        return result[0].astype(np.float32), (result[1].astype(np.float32) if embeddings else None)


ENGINES: dict[str, Callable[..., Engine]] = {"torch": TorchEngine, "onnx": OnnxEngine}
ENGINE_CHOICES = ("auto", *ENGINES)


def choose_engine(kind: str, device: str) -> str:
    """``auto`` is the engine measured faster on the device: ONNX Runtime on a CPU (4.1x torch
    for the 195K ResNet on 2 cores, preprocessing included: ANCHORS.md), torch (bf16,
    channels_last) on CUDA; torch when onnxruntime is not installed."""
    if kind != "auto":
        if kind not in ENGINES:
            raise LenscalError(f"unknown engine {kind!r}; choose one of {list(ENGINE_CHOICES)}")
        return kind
    if resolve_device(device).type == "cuda":
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"


def make_engine(kind: str, bundle_dir: str, device: str = "auto", **kwargs: Any) -> Engine:
    chosen = choose_engine(kind, device)
    if chosen != "torch":
        kwargs.pop("compile", None)
    return ENGINES[chosen](bundle_dir, device, **kwargs)
