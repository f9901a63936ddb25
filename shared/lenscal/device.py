"""The device rule, the same for every command and library call: ``auto`` picks CUDA when a
GPU is visible and the CPU otherwise; ``cpu`` is the CPU; an explicit ``cuda`` or ``cuda:N``
without a GPU is an error (never a silent fall-back to a run 100x slower than asked for)."""

from __future__ import annotations

import torch

from lenscal.errors import LenscalError

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
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
