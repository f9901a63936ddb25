"""Checkpoint bundles: a directory with ``model.safetensors`` (weights, loadable without
unpickling code), ``model.json`` (architecture and arguments, PreprocessSpec, config,
metrics, provenance incl. the weights' SHA-256), once exported ``model.onnx``, and
``seal.json``.

The seal covers every file in the bundle (SHA-256 each); ``bundle_sha256`` hashes the seal's
file list, and a bundle is known by it (or by its registry run id). Loading checks the seal:
an edited ``model.json`` (say, its clip range), other weights, an ONNX file copied in from
another model or any extra or missing file is refused, as is a malformed bundle, each with
one line naming the problem. Only lenscal's own writers (save, ONNX export) re-seal.
Writing goes to a temporary directory renamed into place, so a killed run never leaves
half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_write_text, sha256_file
from lenscal.models.architectures import LensFinder, create_model
from lenscal.preprocess import PreprocessSpec
from lenscal.survey import CUTOUT_SHAPE
from lenscal.validation import describe

WEIGHTS = "model.safetensors"
META = "model.json"
ONNX = "model.onnx"
SEAL = "seal.json"
FORMAT = "lenscal-bundle/1"
SEAL_FORMAT = "lenscal-seal/1"
#: model.json keys every bundle must have.
META_KEYS = ("format", "arch", "arch_kwargs", "preprocess", "embedding_dim", "provenance")


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
    def bundle_sha256(self) -> str:
        return read_seal(self.path)["bundle_sha256"]

    @property
    def model_id(self) -> str:
        return str(self.meta.get("run_id") or self.bundle_sha256[:12])


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


def seal(directory: str | Path) -> str:
    """(Re)write the seal over every file of the bundle; returns bundle_sha256."""
    path = Path(directory)
    files = {
        p.name: sha256_file(p)
        for p in sorted(path.iterdir())
        if p.is_file() and p.name != SEAL and ".partial" not in p.name
    }
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    atomic_write_text(
        path / SEAL,
        json.dumps({"format": SEAL_FORMAT, "files": files, "bundle_sha256": digest}, indent=1) + "\n",
    )
    return digest


def read_seal(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / SEAL
    if not path.is_file():
        raise BundleError(f"{directory}: bundle is not sealed (no {SEAL}); save it with lenscal")
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != SEAL_FORMAT or not isinstance(raw.get("files"), dict):
            raise ValueError(f"format {raw.get('format')!r}")
        return dict(raw)
    except (ValueError, AttributeError) as exc:
        raise BundleError(f"{path}: not a valid seal ({exc})") from None


def verify_bundle(directory: str | Path, *, allow_stale: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check the seal against every file (``allow_stale``: files about to be rewritten) and
    the shape of model.json; return model.json's contents."""
    path = Path(directory)
    if not path.is_dir():
        raise BundleError(f"{path}: not a checkpoint bundle (no such directory)")
    if not (path / META).is_file():
        raise BundleError(f"{path}: not a checkpoint bundle (no {META})")
    sealed = read_seal(path)["files"]
    # A '.partial' file is what an interrupted writer left; it is never read.
    present = {p.name for p in path.iterdir() if p.is_file() and p.name != SEAL and ".partial" not in p.name}
    for name in sorted(present - set(sealed) - set(allow_stale)):
        raise BundleError(f"{path / name}: not covered by the bundle's seal: refusing an added file")
    for name, digest in sorted(sealed.items()):
        if name in allow_stale:
            continue
        if name not in present:
            raise BundleError(f"{path / name}: missing from the bundle (its seal lists it)")
        if sha256_file(path / name) != digest:
            what = {WEIGHTS: "weights", META: "model.json", ONNX: "ONNX model"}.get(name, name)
            raise BundleError(
                f"{path / name}: SHA-256 differs from the bundle's seal: refusing tampered {what}"
            )
    try:
        meta = json.loads((path / META).read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / META}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{path / META}: not a JSON object")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{path / META}: missing key(s) {missing}")
    if meta.get("format") != FORMAT:
        raise BundleError(f"{path / META}: unsupported bundle format {meta.get('format')!r}")
    try:
        PreprocessSpec.model_validate(meta["preprocess"])
    except ValidationError as exc:
        raise BundleError(f"{path / META}: preprocess: {describe(exc)}") from None
    return dict(meta)


def read_meta(directory: str | Path) -> dict[str, Any]:
    """model.json of a verified bundle."""
    return verify_bundle(directory)


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
    except (RuntimeError, OSError) as exc:
        raise BundleError(
            f"{path / WEIGHTS}: does not fit {meta['arch']} ({str(exc).splitlines()[0]})"
        ) from None
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
    bundle = load_bundle(directory, allow_stale=(ONNX,))  # the ONNX file is what gets rewritten
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
    seal(bundle.path)
    return out
