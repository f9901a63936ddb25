"""The ONNX Runtime engine. Raw cutouts with the bundle's own preprocessing go through
``model.raw.onnx`` (preprocessing traced into the graph from ``lenscal.preprocess``), so
this engine needs no torch; preprocessed cutouts go through ``model.onnx``. A per-request
preprocessing override (diagnostics) is applied by torch before ``model.onnx`` where torch
is installed, and refused with a reason where it is not (the torch-free scorer image)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lenscal.bundle_files import ONNX, RAW_ONNX, BundleError, read_bundle_info
from lenscal.device import onnx_providers
from lenscal.errors import RequestError
from lenscal.preprocess_spec import PreprocessSpec


def _torch_missing(exc: ImportError) -> bool:
    return (exc.name or "").split(".")[0] == "torch"


class OnnxEngine:
    name = "onnx"

    def __init__(self, bundle_dir: str, device: str = "auto") -> None:
        import onnxruntime as ort

        self.bundle = read_bundle_info(bundle_dir)
        if not all((self.bundle.path / name).is_file() for name in (ONNX, RAW_ONNX)):
            _export(self.bundle.path)
            self.bundle = read_bundle_info(bundle_dir)
        providers: list[Any] = list(onnx_providers(device, ort.get_available_providers()))
        if device.strip().lower().startswith("cuda:"):  # the GPU asked for, by index
            index = int(device.split(":", 1)[1])
            providers = [(p, {"device_id": index}) if p != "CPUExecutionProvider" else p for p in providers]
        self.sessions = {name: self._session(ort, name, providers) for name in (ONNX, RAW_ONNX)}
        used = self.sessions[ONNX].get_providers()
        self.device = "cuda" if any(p != "CPUExecutionProvider" for p in used) else "cpu"

    def _session(self, ort: Any, name: str, providers: list[Any]) -> Any:
        path = self.bundle.path / name
        try:
            return ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for a file it cannot use
            raise BundleError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None

    def infer(
        self, batch: np.ndarray, spec: PreprocessSpec | None, embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if spec is None:
            graph = ONNX
        elif spec == self.bundle.spec:
            graph = RAW_ONNX
        else:
            x, graph = _preprocess_with_torch(x, spec), ONNX
        outputs = ["logits", "embeddings"] if embeddings else ["logits"]
        result = self.sessions[graph].run(outputs, {"cutouts": x})
        return result[0].astype(np.float32), (result[1].astype(np.float32) if embeddings else None)


def _export(path: object) -> None:
    try:
        from lenscal.models.bundle import export_onnx
    except ImportError as exc:
        if not _torch_missing(exc):
            raise
        raise BundleError(
            f"{path}: has no {ONNX} and {RAW_ONNX}, and this scorer has no torch to export them;"
            f" run 'lenscal export-onnx {path}' where torch is installed"
        ) from None
    try:
        export_onnx(str(path))
    except OSError as exc:  # a read-only mount (a scorer container's checkpoint volume)
        raise BundleError(
            f"{path}: has no {RAW_ONNX} and it cannot be written here ({exc.strerror}); run"
            f" 'lenscal export-onnx {path}' where the bundle is writable"
        ) from None


def _preprocess_with_torch(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    try:
        import torch

        from lenscal.preprocess import preprocess
    except ImportError as exc:
        if not _torch_missing(exc):
            raise
        raise RequestError(
            "preprocess_override",
            "this scorer runs without torch and applies only the model's own preprocessing"
            " (model.raw.onnx); send no override, or use a scorer with torch",
        ) from None
    return preprocess(torch.from_numpy(batch), spec).numpy()
