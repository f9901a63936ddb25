"""The torch engine: the bundle's network through ``lenscal.models.predict`` (the same
forward pass as training validation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lenscal.device import resolve_device
from lenscal.models.bundle import load_bundle
from lenscal.models.predict import predict
from lenscal.preprocess import PreprocessSpec


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
