"""Inference engines behind one interface. Both take raw (or preprocessed) cutouts, apply
the bundle's PreprocessSpec (or a per-request override) through the one shared
``preprocess`` in torch, and return float32 logits (+ embeddings).

- ``torch``: the bundle's model; on CUDA bf16 autocast, channels_last, optional compile.
- ``onnx``: ONNX Runtime on the bundle's ``model.onnx`` (CUDA / TensorRT providers when
  present, else CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from lenscal.errors import LenscalError
from lenscal.inference import predict
from lenscal.models.bundle import ONNX, Bundle, export_onnx, load_bundle
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
        self, bundle_dir: str, device: str = "cpu", *, amp: bool = True, compile: bool = False
    ) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LenscalError(f"--device {device}: no CUDA device is available")
        self.device = device
        self.bundle = load_bundle(bundle_dir, device=device)
        self.amp = amp
        if device.startswith("cuda"):
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

    def __init__(self, bundle_dir: str, device: str = "cpu") -> None:
        import onnxruntime as ort

        self.bundle = load_bundle(bundle_dir)
        path = self.bundle.path / ONNX
        if not path.is_file():
            export_onnx(self.bundle.path)
        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            wanted = [
                p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available
            ] + wanted
        self.session = ort.InferenceSession(str(path), providers=wanted)
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


def make_engine(kind: str, bundle_dir: str, device: str, **kwargs: Any) -> Engine:
    if kind not in ENGINES:
        raise LenscalError(f"unknown engine {kind!r}; choose one of {sorted(ENGINES)}")
    return ENGINES[kind](bundle_dir, device, **kwargs)
