"""The one scoring interface. Grids, diagnostics, flows, evaluation and the CLI score
cutouts through a ``Scorer``; two implementations behave the same:

- ``lenscal.scoring.local.LocalScorer``: in-process (engine + micro-batcher);
- ``lenscal.rpc.scorer_client.GrpcScorer``: the scorer service over gRPC (replicas,
  float16 wire, retries).

``lenscal.backends.open_scorer`` picks one from a bundle path or endpoint addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lenscal.preprocess_spec import PreprocessOverride, PreprocessSpec

Progress = Callable[[int], None]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities (float64: near 1, float32 would turn distinct scores into ties)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


@dataclass
class ScoreResult:
    """One score per cutout, in input order."""

    logits: np.ndarray  # (N,) float32
    probabilities: np.ndarray  # (N,) sigmoid of the logits
    embeddings: np.ndarray | None  # (N, D) float32 penultimate embeddings, when asked for
    model_id: str  # registry run id or weights SHA-256 prefix of the model that scored
    spec: PreprocessSpec | None = None  # preprocessing applied (None: input was preprocessed)


@dataclass(frozen=True)
class ModelInfo:
    """What a scorer has loaded under one name."""

    name: str
    model_id: str
    architecture: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    spec: PreprocessSpec
    embedding_dim: int
    engine: str
    device: str
    weights_sha256: str
    is_default: bool
    bundle_sha256: str = ""

    @property
    def preprocess_spec_json(self) -> str:
        return self.spec.to_json()


class Scorer(Protocol):
    def score(
        self,
        cutouts: np.ndarray,
        *,
        model: str = "",
        preprocessed: bool = False,
        override: PreprocessOverride | None = None,
        return_embeddings: bool = False,
        ids: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> ScoreResult:
        """Score (N, 3, H, W) cutouts: raw nanomaggies (the model's own PreprocessSpec is
        applied, with ``override`` if given) unless ``preprocessed``. ``model``: a loaded
        model's name; empty for the default."""
        ...

    def model_info(self, model: str = "") -> list[ModelInfo]:
        """Loaded models (or the one named)."""
        ...

    def wait_ready(self, timeout_s: float = 120.0, connect_timeout_s: float | None = None) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Scorer: ...

    def __exit__(self, *exc: object) -> None: ...
