"""The device rule, the same for every command and library call: ``auto`` picks CUDA when a
GPU is visible and the CPU otherwise; ``cpu`` is the CPU; an explicit ``cuda`` or ``cuda:N``
without a GPU is an error (never a silent fall-back to a run 100x slower than asked for).

torch is imported where used: the torch-free ONNX scorer applies the same rule to ONNX
Runtime's execution providers (``onnx_providers``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lenscal.errors import LenscalError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    import torch

    if isinstance(requested, torch.device):
        requested = str(requested)
    name = requested.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise LenscalError(f"device {requested!r}: no CUDA device is available (use auto or cpu)")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LenscalError(
                f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return device
    raise LenscalError(f"device {requested!r} is not one of: {DEVICE_HELP}")


#: ONNX Runtime's GPU execution providers, in order of preference.
ONNX_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def onnx_providers(requested: str, available: list[str]) -> list[str]:
    """ONNX Runtime providers for ``requested`` under the device rule: ``auto`` uses a GPU
    provider when ONNX Runtime has one; ``cuda`` without one is an error."""
    name = requested.strip().lower()
    gpu = [p for p in ONNX_GPU_PROVIDERS if p in available]
    if name == "auto":
        return [*gpu, "CPUExecutionProvider"]
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "cuda" or name.startswith("cuda:"):
        if not gpu:
            raise LenscalError(
                f"device {requested!r}: this ONNX Runtime has no CUDA provider (install"
                " onnxruntime-gpu, or use auto or cpu)"
            )
        return [*gpu, "CPUExecutionProvider"]
    raise LenscalError(f"device {requested!r} is not one of: {DEVICE_HELP}")
