"""Small worlds the end-to-end tests run in: a mock survey packed into shards, and a small
untrained BottleneckedResNet bundle (seeded, with its ONNX export)."""

from __future__ import annotations

from pathlib import Path

import torch

from lenscal.preprocess import PreprocessSpec


def mock_shards(root: Path, n: int, positive_fraction: float = 0.1, seed: int = 4) -> Path:
    """The mock survey (``root/mock``) packed as float16 shards; returns ``root/shards``."""
    from lenscal.data.ingest import ingest
    from lenscal.mock import make_mock_survey

    survey = make_mock_survey(
        root / "mock", n=n, seed=seed, positive_fraction=positive_fraction, progress=False
    )
    ingest(survey.manifest, root / "shards", dtype="float16", progress=False)
    return root / "shards"


def small_bundle(
    directory: Path, spec: PreprocessSpec | None = None, run_id: str = "resnet-gen9", seed: int = 5
) -> Path:
    """A seeded (``seed``), untrained bottlenecked_resnet (base_ch 8) bundle with model.onnx."""
    from lenscal.models import create_model
    from lenscal.models.bundle import export_onnx, save_bundle

    torch.manual_seed(seed)
    bundle = save_bundle(
        directory,
        create_model("bottlenecked_resnet", base_ch=8),
        arch="bottlenecked_resnet",
        arch_kwargs={"base_ch": 8},
        spec=spec or PreprocessSpec(),
        run_id=run_id,
    )
    export_onnx(bundle)
    return bundle


def grid_world(root: Path, bundle: str = "resnet-gen9") -> Path:
    """What the grid tests run in: 300 mock hosts in shards and a clip-3 bundle ``root/bundle``."""
    mock_shards(root, n=300)
    small_bundle(root / bundle, PreprocessSpec(clip_range=3.0))
    return root
