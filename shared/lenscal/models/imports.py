"""Bringing weights in from files a user already has, never from the network:

- ImageNet weights (a torchvision or timm ``.pth`` / ``.safetensors``) -> the pretrained
  directory, as ``<arch>.safetensors`` (what ``train.pretrained: true`` loads);
- a team checkpoint (``torch.save({"model": state_dict, ...})``) -> a lenscal bundle with a
  PreprocessSpec, ONNX export and provenance, which the scorer serves.

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only. A
file that needs anything else (pickled classes, numpy objects, code) is refused with what
was refused; lenscal never runs code from a weights file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from lenscal.fsutil import atomic_path, sha256_file
from lenscal.models.architectures import ModelError, architecture, create_model, pretrained_dir
from lenscal.models.bundle import export_onnx, save_bundle
from lenscal.preprocess import ANNULUS_GEN1_4, TEAM_CROP_SIZE, PreprocessSpec

#: Where a team checkpoint keeps its model's state dict, in the order looked for.
STATE_KEYS = ("model", "model_state_dict", "state_dict")
HEAD_PREFIXES = ("classifier.", "fc.", "head.")


def read_weights_file(path: str | Path) -> Any:
    """The object in a .pth/.pt (weights_only) or .safetensors file."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "Unsupported" in line or "GLOBAL" in line), reason[0])
        raise ModelError(
            f"{p}: refused: the file holds Python objects that safe (weights_only) loading does not "
            f"allow ({detail.strip()}); lenscal never unpickles code. Re-save it with tensors and "
            "plain containers only"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ModelError(f"{p}: not a readable PyTorch weights file ({exc})") from None


def state_dict_of(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint (or the file itself when it is one)."""
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if isinstance(obj.get(key), dict):
                return _tensors(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise ModelError(f"{path}: found no state dict (looked for a tensor dict or keys {list(STATE_KEYS)})")


def _tensors(state: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(f"{path}: state dict entries that are not tensors: {bad[:5]}")
    return dict(state)


def import_weights(path: str | Path, arch: str) -> Path:
    """ImageNet weights -> ``<pretrained dir>/<arch>.safetensors`` (classifier dropped),
    checked to fit the architecture's backbone exactly."""
    from safetensors.torch import save_file

    state = state_dict_of(read_weights_file(path), path)
    backbone_state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    backbone = create_model(arch).backbone
    missing, unexpected = backbone.load_state_dict(backbone_state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{path}: does not fit the {arch} backbone ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    target = pretrained_dir() / f"{arch}.safetensors"
    with atomic_path(target) as tmp:
        save_file({k: v.contiguous() for k, v in backbone_state.items()}, str(tmp))
    return target


def spec_from_checkpoint(checkpoint: Any) -> PreprocessSpec | None:
    """The preprocessing a team checkpoint records: its ``preprocess_spec`` (mode, crop,
    crop_size, clip_range, annulus), else its ``dataset`` config; None when it says nothing."""
    if not isinstance(checkpoint, dict):
        return None
    recorded = checkpoint.get("preprocess_spec")
    dataset = checkpoint.get("dataset") if isinstance(checkpoint.get("dataset"), dict) else None
    source = recorded if isinstance(recorded, dict) else dataset
    if source is None:
        return None
    kind = source.get("mode") or source.get("preprocessing") or "raw_robust"
    crop = bool(source.get("crop", True))  # the team's loader default
    crop_size = int(source.get("crop_size") or 0) or TEAM_CROP_SIZE
    r_in = source.get("annulus_r_in")
    r_out = source.get("annulus_r_out")
    return PreprocessSpec(
        kind=kind,
        annulus_r_in=float(r_in) if r_in is not None else ANNULUS_GEN1_4[0],
        annulus_r_out=float(r_out) if r_out is not None else ANNULUS_GEN1_4[1],
        clip_range=float(source.get("clip_range", 10.0)),
        crop_size=crop_size if crop else None,
    )


def import_checkpoint(
    path: str | Path,
    arch: str,
    out: str | Path,
    *,
    spec: PreprocessSpec | None = None,
    run_id: str | None = None,
    model_args: dict[str, Any] | None = None,
) -> Path:
    """A team checkpoint -> a checked, ONNX-exported lenscal bundle at ``out``. ``spec``
    overrides what the checkpoint records; one of the two must say how to preprocess."""
    entry = architecture(arch)
    if entry.from_team is None:
        raise ModelError(f"{arch}: no team checkpoint format is known for this architecture")
    checkpoint = read_weights_file(path)
    team_state = state_dict_of(checkpoint, path)
    chosen = spec or spec_from_checkpoint(checkpoint)
    if chosen is None:
        raise ModelError(
            f"{path}: records no preprocessing; give it (e.g. --preprocess raw_robust --annulus 20,32 "
            "--crop-size 64, or --no-crop)"
        )
    args = {**(entry.args_from_state(team_state) if entry.args_from_state else {}), **(model_args or {})}
    model = create_model(arch, **args)
    state = entry.from_team(team_state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{path}: does not fit {arch} {args} ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    recorded = checkpoint if isinstance(checkpoint, dict) else {}
    config = {k: recorded[k] for k in ("dataset", "train") if k in recorded}
    provenance = {"imported_from": str(Path(path).resolve()), "source_sha256": sha256_file(path)}
    bundle = save_bundle(
        out,
        model,
        arch=arch,
        arch_kwargs=args,
        spec=chosen,
        config=config,
        provenance=provenance,
        run_id=run_id,
        metrics={"best_auc": recorded.get("best_auc")},
    )
    export_onnx(bundle)
    return bundle
