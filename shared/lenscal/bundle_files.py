"""Checkpoint bundles on disk, without torch: file names, the seal, model.json checks, and
``BundleInfo`` (what a scorer needs to know about a bundle). Loading the weights into a
network is ``lenscal.models.bundle``; the torch-free ONNX scorer needs only this module.

The seal covers every file in the bundle (SHA-256 each); ``bundle_sha256`` hashes the seal's
file list, and a bundle is known by it (or by its registry run id). Loading checks the seal:
an edited ``model.json`` (say, its clip range), other weights, an ONNX file copied in from
another model or any extra or missing file is refused, as is a malformed bundle, each with
one line naming the problem. Only lenscal's own writers (save, ONNX export) re-seal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_write_text, sha256_file
from lenscal.preprocess_spec import PreprocessSpec
from lenscal.validation import describe
from lenscal.workspace import canonical_sha256

WEIGHTS = "model.safetensors"
META = "model.json"
ONNX = "model.onnx"
#: The same network with the bundle's preprocessing in the graph: raw nanomaggy cutouts in
#: (what a torch-free scorer runs).
RAW_ONNX = "model.raw.onnx"
ONNX_SUFFIX = ".onnx"
SEAL = "seal.json"
FORMAT = "lenscal-bundle/1"
SEAL_FORMAT = "lenscal-seal/1"
#: model.json keys every bundle must have.
META_KEYS = ("format", "arch", "arch_kwargs", "preprocess", "embedding_dim", "provenance")


class BundleError(LenscalError):
    """A checkpoint bundle is missing, incomplete, or fails its hash check."""


@dataclass
class BundleInfo:
    """A verified bundle's directory, preprocessing and model.json."""

    path: Path
    spec: PreprocessSpec
    meta: dict[str, Any]

    @property
    def arch(self) -> str:
        return str(self.meta["arch"])

    @property
    def embedding_dim(self) -> int:
        return int(self.meta["embedding_dim"])

    @property
    def bundle_sha256(self) -> str:
        return str(read_seal(self.path)["bundle_sha256"])

    @property
    def model_id(self) -> str:
        return str(self.meta.get("run_id") or self.bundle_sha256[:12])


def read_bundle_info(directory: str | Path, *, allow_stale: tuple[str, ...] = ()) -> BundleInfo:
    """Verify the seal and model.json; the weights are not loaded."""
    meta = verify_bundle(directory, allow_stale=allow_stale)
    return BundleInfo(Path(directory), PreprocessSpec.model_validate(meta["preprocess"]), meta)


def seal(directory: str | Path) -> str:
    """(Re)write the seal over every file of the bundle; returns bundle_sha256."""
    path = Path(directory)
    files = {
        p.name: sha256_file(p)
        for p in sorted(path.iterdir())
        if p.is_file() and p.name != SEAL and ".partial" not in p.name
    }
    digest = canonical_sha256(files)
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
            what = {WEIGHTS: "weights", META: "model.json", ONNX: "ONNX model", RAW_ONNX: "ONNX model"}.get(
                name, name
            )
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
    try:
        MetaShape.model_validate(meta)
    except ValidationError as exc:  # sealed, but not what lenscal writes (edited and re-sealed)
        raise BundleError(f"{path / META}: {describe(exc)}") from None
    return dict(meta)


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow")

    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class MetaShape(BaseModel):
    """The types of model.json's keys that lenscal reads (others are kept as they are)."""

    model_config = ConfigDict(extra="allow")

    arch: str = Field(min_length=1)
    arch_kwargs: dict[str, Any]
    embedding_dim: StrictInt = Field(gt=0)
    provenance: Provenance
    input_shape: tuple[StrictInt, StrictInt, StrictInt] | None = None
    run_id: str | None = None


def read_meta(directory: str | Path) -> dict[str, Any]:
    """model.json of a verified bundle."""
    return verify_bundle(directory)
