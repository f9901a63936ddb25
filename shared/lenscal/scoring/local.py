"""The in-process Scorer: engines and the micro-batcher of ScoringCore in this process.
Work is fed to the batcher in submission-sized pieces with a bounded number in flight, so
the device stays busy while memory stays bounded whatever the input size."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lenscal.bundle_files import read_meta
from lenscal.errors import LenscalError
from lenscal.preprocess_spec import PreprocessOverride
from lenscal.scoring.api import ModelInfo, Progress, ScoreResult, sigmoid
from lenscal.scoring.core import ScoringCore, Submission
from lenscal.scoring.engines import make_engine


def model_names(paths: Sequence[str | Path]) -> dict[str, str]:
    """name -> bundle dir; a bundle's name is its registry run id, else its directory name."""
    names: dict[str, str] = {}
    for path in paths:
        meta = read_meta(path)
        name = str(meta.get("run_id") or Path(path).resolve().name)
        if name in names:
            raise LenscalError(f"two models are both named {name!r}: {names[name]} and {path}")
        names[name] = str(path)
    return names


def load_core(
    bundles: Sequence[str | Path],
    *,
    engine: str = "auto",
    device: str = "auto",
    compile: bool = False,
    max_batch_size: int = 512,
    batch_wait_timeout_s: float = 0.005,
    max_queue: int = 16384,
    on_batch: object = None,
) -> ScoringCore:
    """A ScoringCore over the given checkpoint bundles (the first is the default model)."""
    if not bundles:
        raise LenscalError("give at least one model bundle")
    extra = {"compile": compile}
    engines = {
        name: make_engine(engine, path, device, **extra) for name, path in model_names(bundles).items()
    }
    return ScoringCore(
        engines,
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_timeout_s,
        max_queue=max_queue,
        on_batch=on_batch,  # type: ignore[arg-type]
    )


class LocalScorer:
    """Scorer over one or more bundles in this process."""

    def __init__(
        self,
        bundles: str | Path | Sequence[str | Path],
        *,
        engine: str = "auto",
        device: str = "auto",
        compile: bool = False,
        max_batch_size: int = 512,
        in_flight: int = 4,
    ) -> None:
        paths = [bundles] if isinstance(bundles, (str, Path)) else list(bundles)
        self.core = load_core(
            paths,
            engine=engine,
            device=device,
            compile=compile,
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=0.0,  # one caller: nothing to wait for
            max_queue=max_batch_size * (in_flight + 1),
        )
        self.piece = max_batch_size
        self.in_flight = max(1, in_flight)

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
        if ids is not None and len(ids) != len(cutouts):
            raise LenscalError(f"ids has {len(ids)} entries for {len(cutouts)} cutouts")
        name, engine = self.core.engine(model)
        spec = self.core.resolve_spec(engine, preprocessed, override)
        n = len(cutouts)
        logits = np.empty(n, dtype=np.float32)
        embeddings = np.empty((n, engine.bundle.embedding_dim), np.float32) if return_embeddings else None
        pending: deque[tuple[int, Submission]] = deque()

        def collect() -> None:
            start, submission = pending.popleft()
            out, emb = submission.future.result()
            logits[start : start + len(out)] = out
            if embeddings is not None and emb is not None:
                embeddings[start : start + len(out)] = emb
            if progress is not None:
                progress(len(out))

        for start in range(0, n, self.piece):
            piece = np.ascontiguousarray(cutouts[start : start + self.piece])
            submission = self.core.submit(
                piece,
                model=name,
                preprocessed=preprocessed,
                override=override,
                return_embeddings=return_embeddings,
            )
            pending.append((start, submission))
            if len(pending) >= self.in_flight:
                collect()
        while pending:
            collect()
        return ScoreResult(
            logits, sigmoid(logits).astype(np.float32), embeddings, engine.bundle.model_id, spec
        )

    def model_info(self, model: str = "") -> list[ModelInfo]:
        return self.core.model_info(model)

    def wait_ready(self, timeout_s: float = 120.0, connect_timeout_s: float | None = None) -> None:
        """Loaded models are ready at once."""

    def close(self) -> None:
        self.core.drain(5.0)

    def __enter__(self) -> LocalScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
