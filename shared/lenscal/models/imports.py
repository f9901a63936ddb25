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
from lenscal.preprocess_spec import KINDS

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


#: The team's ``preprocess_stack`` defaults: its STAMP_SIZE crop and the (20, 32) px annulus.
TEAM_CLIP_RANGE = 10.0
#: "No clip": the loader of 2026-02-09 (train.py before the clip was added) did not clip.
UNCLIPPED = 1e30


def spec_from_checkpoint(checkpoint: Any) -> PreprocessSpec | None:
    """The preprocessing a team checkpoint records, read by the rules of the format that
    saved it (None when it records nothing):

    - ``preprocess_spec`` (dhs/train.py from 2026-02-13: ``PreprocessSpec.to_dict()``):
      ``mode`` is the normalisation kind; ``crop`` with ``crop_size`` (0: the team's 64 px);
      ``clip_range``; ``annulus_r_in``/``annulus_r_out`` (None: (20, 32) px).
    - only ``dataset`` (``DatasetConfig.__dict__``, dhs/train.py before 2026-02-13): here
      ``dataset.mode`` is the *data* mode (file_manifest, paired, unpaired_manifest) and
      ``dataset.preprocessing`` the kind. The crop is the loader's at that version: without
      a ``crop`` key (before 2026-02-11) every cutout was cropped to 64 px; with it, cropped
      when ``crop`` (``crop_size`` 0: 64 px). Annulus radii <= 0 or absent: (20, 32) px. Clip
      10, except the loader of 2026-02-09 (no ``cutout_path_col`` key yet), which did not
      clip (``UNCLIPPED``)."""
    if not isinstance(checkpoint, dict):
        return None
    recorded = checkpoint.get("preprocess_spec")
    if isinstance(recorded, dict):
        clip = recorded.get("clip_range", TEAM_CLIP_RANGE)
        return _spec(recorded, "preprocess_spec", kind_field="mode", clip=clip)
    dataset = checkpoint.get("dataset")
    if not isinstance(dataset, dict):
        return None
    clip = TEAM_CLIP_RANGE if "cutout_path_col" in dataset else UNCLIPPED
    return _spec(dataset, "dataset", kind_field="preprocessing", clip=clip)


def _spec(source: dict[str, Any], section: str, *, kind_field: str, clip: Any) -> PreprocessSpec:
    """A spec from one recorded section: the kind at ``kind_field``, crop (default on, as
    the team's loader), crop size (0: 64 px), annulus (<= 0 or absent: (20, 32) px), clip."""
    kind, key = source.get(kind_field), f"{section}.{kind_field}"
    if not isinstance(kind, str) or kind not in KINDS:
        raise ModelError(f"the checkpoint's {key} is {kind!r}, not a preprocessing kind ({', '.join(KINDS)})")
    crop = bool(source.get("crop", True))
    r_in, r_out = source.get("annulus_r_in"), source.get("annulus_r_out")
    annulus = ANNULUS_GEN1_4
    if r_in is not None and r_out is not None and float(r_in) > 0 and float(r_out) > 0:
        annulus = (float(r_in), float(r_out))
    crop_size = int(source.get("crop_size") or 0) or TEAM_CROP_SIZE
    try:
        return PreprocessSpec(
            kind=kind,
            annulus_r_in=annulus[0],
            annulus_r_out=annulus[1],
            clip_range=float(clip),
            crop_size=crop_size if crop else None,
        )
    except ValueError as exc:
        raise ModelError(
            f"the checkpoint's {section} does not describe a valid preprocessing: {exc}"
        ) from None


def import_checkpoint(
    path: str | Path,
    arch: str | None,
    out: str | Path,
    *,
    spec: PreprocessSpec | None = None,
    run_id: str | None = None,
    model_args: dict[str, Any] | None = None,
) -> Path:
    """A team checkpoint -> a checked, ONNX-exported lenscal bundle at ``out``. ``spec``
    overrides what the checkpoint records; one of the two must say how to preprocess.
    ``arch`` None: the architecture the checkpoint's ``train.arch`` names."""
    checkpoint = read_weights_file(path)
    if arch is None:
        train = checkpoint.get("train") if isinstance(checkpoint, dict) else None
        arch = train.get("arch") if isinstance(train, dict) else None
        if not isinstance(arch, str):
            raise ModelError(f"{path}: records no architecture (train.arch); give it with --arch")
    entry = architecture(arch)
    if entry.from_team is None:
        raise ModelError(f"{arch}: no team checkpoint format is known for this architecture")
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
