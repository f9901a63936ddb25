"""Checkpoint bundles: a directory with ``model.safetensors`` (weights, loadable without
unpickling code), ``model.json`` (architecture and arguments, PreprocessSpec, config,
metrics, provenance incl. the weights' SHA-256) and, once exported, ``model.onnx``.

Loading re-hashes the weights and refuses a bundle whose file changed. Writing goes to a
temporary directory renamed into place, so a killed run never leaves half a bundle.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lenscal.errors import LenscalError
from lenscal.fsutil import sha256_file
from lenscal.models.architectures import LensFinder, create_model
from lenscal.preprocess import PreprocessSpec
from lenscal.survey import CUTOUT_SHAPE

WEIGHTS = "model.safetensors"
META = "model.json"
ONNX = "model.onnx"
FORMAT = "lenscal-bundle/1"


class BundleError(LenscalError):
    """A checkpoint bundle is missing, incomplete, or fails its hash check."""


@dataclass
class Bundle:
    path: Path
    model: LensFinder
    spec: PreprocessSpec
    meta: dict[str, Any]

    @property
    def arch(self) -> str:
        return str(self.meta["arch"])

    @property
    def model_id(self) -> str:
        return str(self.meta.get("run_id") or self.meta["provenance"]["weights_sha256"][:12])


def save_bundle(
    directory: str | Path,
    model: LensFinder,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    spec: PreprocessSpec,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    run_id: str | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    from safetensors.torch import save_file

    final = Path(directory)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS))
    meta = {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "preprocess": json.loads(spec.to_json()),
        "input_shape": list(spec.output_shape(CUTOUT_SHAPE)),
        "embedding_dim": model.embedding_dim,
        "run_id": run_id,
        "config": config or {},
        "metrics": metrics or {},
        "provenance": {**(provenance or {}), "weights_sha256": sha256_file(tmp / WEIGHTS)},
    }
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    for name, data in (extra_files or {}).items():
        (tmp / name).write_bytes(data)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def recover_bundle(directory: str | Path) -> None:
    """Finish a save that a kill interrupted between its two renames (``X.old`` kept, ``X``
    gone): the previous complete bundle is put back. A ``.partial`` directory is discarded."""
    final = Path(directory)
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.exists():
        old.rename(final)
    shutil.rmtree(final.with_name(final.name + ".partial"), ignore_errors=True)


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.is_file():
        raise BundleError(f"{directory}: not a checkpoint bundle (no {META})")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise BundleError(f"{path}: unsupported bundle format {meta.get('format')!r}")
    return dict(meta)


def load_bundle(directory: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load weights (hash-checked, no pickle), rebuild the model, return it in eval mode."""
    from safetensors.torch import load_file

    path = Path(directory)
    meta = read_meta(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise BundleError(f"{path}: missing {WEIGHTS}")
    expected = meta["provenance"]["weights_sha256"]
    if sha256_file(weights) != expected:
        raise BundleError(
            f"{weights}: SHA-256 differs from model.json ({expected[:12]}…): refusing tampered weights"
        )
    model = create_model(meta["arch"], **meta.get("arch_kwargs", {}))
    model.load_state_dict(load_file(str(weights)))
    model.to(device).eval()
    return Bundle(path=path, model=model, spec=PreprocessSpec.model_validate(meta["preprocess"]), meta=meta)


def export_onnx(
    directory: str | Path, *, opset: int = 17, parity_batch: int = 4, tolerance: float = 1e-4
) -> Path:
    """Write model.onnx (dynamic batch; outputs logits and embeddings) and check it against
    torch on random preprocessed-like inputs: |logit difference| <= tolerance x scale, with
    scale = max(1, sum_j |w_j e_j| + |b|), the size of the head's dot product (a float32
    dot product's rounding grows with it: an untrained EfficientNet's logit moves by ~1e-2
    between thread counts in torch alone)."""
    bundle = load_bundle(directory)
    model = bundle.model.float().eval()
    out = bundle.path / ONNX
    tmp = out.with_name(out.name + ".partial")
    shape = bundle.spec.output_shape(CUTOUT_SHAPE)  # the network's input: after any crop
    example = torch.randn(parity_batch, *shape)

    class _Both(torch.nn.Module):
        def __init__(self, inner: LensFinder) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner.forward_with_embedding(x)

    torch.onnx.export(
        _Both(model).eval(),
        (example,),
        str(tmp),
        input_names=["cutouts"],
        output_names=["logits", "embeddings"],
        dynamic_axes={"cutouts": {0: "batch"}, "logits": {0: "batch"}, "embeddings": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    probe = torch.randn(parity_batch + 3, *shape)  # a different batch size than exported
    with torch.no_grad():
        logits, embeddings = model.forward_with_embedding(probe)
        linear = model.head[-1]
        assert isinstance(linear, torch.nn.Linear)
        scale = (embeddings.abs() @ linear.weight.abs().T).squeeze(-1) + linear.bias.abs()
    expected = logits.numpy()
    got = session.run(["logits"], {"cutouts": probe.numpy()})[0]
    worst = float((np.abs(got - expected) / np.maximum(1.0, scale.numpy())).max())
    if worst > tolerance:
        tmp.unlink(missing_ok=True)
        raise BundleError(
            f"ONNX parity failed: |logit difference| / max(1, sum |w e|) = {worst:.3g} > {tolerance}"
        )
    tmp.rename(out)
    return out
