"""Checkpoint bundles: a directory with ``model.safetensors`` (weights, loadable without
unpickling code), ``model.json`` (architecture and arguments, PreprocessSpec, config,
metrics, provenance incl. the weights' SHA-256), once exported ``model.onnx`` and
``model.raw.onnx``, and ``seal.json`` (``lenscal.bundle_files``: the seal and its checks).
Writing goes to a temporary directory renamed into place, so a killed run never leaves
half a bundle.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lenscal.bundle_files import (
    FORMAT,
    META,
    ONNX,
    RAW_ONNX,
    SEAL,
    WEIGHTS,
    BundleError,
    BundleInfo,
    read_meta,
    read_seal,
    seal,
    verify_bundle,
)
from lenscal.fsutil import sha256_file
from lenscal.models.architectures import LensFinder, create_model
from lenscal.preprocess import PreprocessSpec, preprocess
from lenscal.survey import CUTOUT_SHAPE

__all__ = [
    "META",
    "ONNX",
    "RAW_ONNX",
    "SEAL",
    "WEIGHTS",
    "Bundle",
    "BundleError",
    "export_onnx",
    "load_bundle",
    "read_meta",
    "read_seal",
    "recover_bundle",
    "save_bundle",
    "seal",
    "verify_bundle",
]


@dataclass
class Bundle(BundleInfo):
    """A bundle with its network loaded."""

    model: LensFinder


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
    seal(tmp)
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


def load_bundle(
    directory: str | Path, device: str | torch.device = "cpu", *, allow_stale: tuple[str, ...] = ()
) -> Bundle:
    """Verify the seal, load the weights (no pickle), rebuild the model, return it in eval mode."""
    from safetensors.torch import load_file

    path = Path(directory)
    meta = verify_bundle(path, allow_stale=allow_stale)
    model = create_model(meta["arch"], **meta["arch_kwargs"])
    try:
        model.load_state_dict(load_file(str(path / WEIGHTS)))
    except Exception as exc:  # safetensors' SafetensorError, torch's RuntimeError, OSError
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"{path / WEIGHTS}: not weights of {meta['arch']} ({first})") from None
    model.to(device).eval()
    return Bundle(path=path, model=model, spec=PreprocessSpec.model_validate(meta["preprocess"]), meta=meta)


def export_onnx(
    directory: str | Path, *, opset: int = 17, parity_batch: int = 4, tolerance: float = 1e-4
) -> Path:
    """Write model.onnx (preprocessed input) and model.raw.onnx (raw nanomaggy cutouts in:
    the bundle's ``preprocess`` traced into the graph, so one definition serves torch and a
    torch-free scorer), both with a dynamic batch and outputs logits and embeddings, and
    check each against torch: |logit difference| <= tolerance x scale, with
    scale = max(1, sum_j |w_j e_j| + |b|), the size of the head's dot product (a float32
    dot product's rounding grows with it: an untrained EfficientNet's logit moves by ~1e-2
    between thread counts in torch alone). Returns model.onnx's path."""
    bundle = load_bundle(directory, allow_stale=(ONNX, RAW_ONNX))  # the files rewritten here
    model = bundle.model.float().eval()
    spec = bundle.spec
    generator = torch.Generator().manual_seed(0)
    # Preprocessed-like input for model.onnx; sky-like raw cutouts (noise around a faint
    # source, a few NaN pixels) for model.raw.onnx.
    shape = spec.output_shape(CUTOUT_SHAPE)
    raw = 0.01 * torch.randn(parity_batch + 3, *CUTOUT_SHAPE, generator=generator)
    raw[:, :, 45:56, 45:56] += 0.2
    raw[0, 1, 3, 7] = float("nan")

    class _Both(torch.nn.Module):
        def __init__(self, inner: LensFinder) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner.forward_with_embedding(x)

    class _Raw(_Both):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner.forward_with_embedding(preprocess(x, spec))

    graphs = (
        (ONNX, _Both(model), torch.randn(parity_batch + 3, *shape, generator=generator)),
        (RAW_ONNX, _Raw(model), raw),
    )
    for name, module, probe in graphs:
        _export_checked(module, bundle.path / name, probe, parity_batch, opset, tolerance)
    seal(bundle.path)
    return bundle.path / ONNX


def _export_checked(
    module: torch.nn.Module, out: Path, probe: torch.Tensor, batch: int, opset: int, tolerance: float
) -> None:
    """Trace ``module`` on ``batch`` inputs into ``out`` (via a temporary file) and compare
    ONNX Runtime with torch on ``probe`` (a different batch size than traced)."""
    import onnxruntime as ort

    tmp = out.with_name(out.name + ".partial")
    with warnings.catch_warnings():
        # Sizes read during tracing (the annulus pixel count) become constants: intended, as
        # a graph serves one cutout size; only the batch axis stays dynamic.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module.eval(),
            (probe[:batch],),
            str(tmp),
            input_names=["cutouts"],
            output_names=["logits", "embeddings"],
            dynamic_axes={"cutouts": {0: "batch"}, "logits": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        logits, embeddings = module(probe)
        linear = module.inner.head[-1]  # type: ignore[union-attr, index]
        assert isinstance(linear, torch.nn.Linear)
        scale = (embeddings.abs() @ linear.weight.abs().T).squeeze(-1) + linear.bias.abs()
    got = session.run(["logits"], {"cutouts": probe.numpy()})[0]
    worst = float((np.abs(got - logits.numpy()) / np.maximum(1.0, scale.numpy())).max())
    if not worst <= tolerance:  # NaN fails too
        tmp.unlink(missing_ok=True)
        raise BundleError(
            f"{out.name}: ONNX parity failed: |logit difference| / max(1, sum |w e|) = {worst:.3g}"
            f" > {tolerance}"
        )
    tmp.rename(out)
