"""The scorer without a transport: model lookup, preprocessing-override resolution, the
NaN/inf value policy, micro-batched submission with in-flight accounting, and drain. The
in-process LocalScorer and the gRPC servicer are both thin layers over it, so they cannot
disagree on any of these rules."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from lenscal.errors import NotFoundError, NotReadyError, RequestError
from lenscal.preprocess_spec import PreprocessOverride, PreprocessSpec
from lenscal.scoring.api import ModelInfo
from lenscal.scoring.batcher import MicroBatcher
from lenscal.scoring.engines import Engine
from lenscal.survey import CUTOUT_SHAPE
from lenscal.validation import describe

#: Cutouts accepted in one submission (one gRPC message); larger work is sent in pieces.
MAX_PER_SUBMISSION = 4096
#: Largest |value| accepted: raw nanomaggies (1e20 nmgy is magnitude -27.5) and network input.
RAW_LIMIT = 1e20
PREPROCESSED_LIMIT = 1e6


@dataclass
class Submission:
    """Accepted work: its future yields (logits, embeddings or None)."""

    future: Future[tuple[np.ndarray, np.ndarray | None]]
    model: str
    model_id: str
    spec: PreprocessSpec | None  # applied preprocessing; None for preprocessed input


class ScoringCore:
    def __init__(
        self,
        engines: dict[str, Engine],
        *,
        max_batch_size: int = 512,
        batch_wait_timeout_s: float = 0.005,
        max_queue: int = 16384,
        on_batch: Callable[[int, float, float], None] | None = None,
    ) -> None:
        if not engines:
            raise ValueError("at least one model")
        self.engines = engines
        self.default = next(iter(engines))
        self._draining = False
        self._in_flight = 0
        self._idle = threading.Condition()
        self.batcher = MicroBatcher(
            self._run,
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=batch_wait_timeout_s,
            max_queue=max_queue,
            on_batch=on_batch,
        )

    # --- lookups -------------------------------------------------------------------------

    def engine(self, name: str = "") -> tuple[str, Engine]:
        name = name or self.default
        if name not in self.engines:
            raise NotFoundError(f"model: unknown model {name!r}; loaded: {sorted(self.engines)}")
        return name, self.engines[name]

    def model_info(self, name: str = "") -> list[ModelInfo]:
        names = [self.engine(name)[0]] if name else list(self.engines)
        return [self._info(n) for n in names]

    def _info(self, name: str) -> ModelInfo:
        engine = self.engines[name]
        meta = engine.bundle.meta
        return ModelInfo(
            name=name,
            model_id=engine.bundle.model_id,
            architecture=str(meta["arch"]),
            input_shape=CUTOUT_SHAPE,
            spec=engine.bundle.spec,
            embedding_dim=int(meta["embedding_dim"]),
            engine=engine.name,
            device=engine.device,
            weights_sha256=str(meta["provenance"]["weights_sha256"]),
            is_default=name == self.default,
            bundle_sha256=engine.bundle.bundle_sha256,
        )

    # --- rules ---------------------------------------------------------------------------

    @staticmethod
    def resolve_spec(
        engine: Engine, preprocessed: bool, override: PreprocessOverride | None
    ) -> PreprocessSpec | None:
        """The spec to apply: the bundle's, changed by ``override``; None for preprocessed input."""
        if preprocessed:
            if override is not None and not override.is_empty():
                raise RequestError("preprocess_override", "cannot apply to a batch marked preprocessed")
            return None
        if override is None:
            return engine.bundle.spec
        try:
            return override.apply(engine.bundle.spec)
        except ValidationError as exc:
            raise RequestError("preprocess_override", describe(exc)) from None

    @staticmethod
    def input_shape(engine: Engine, preprocessed: bool) -> tuple[int, int, int]:
        """(C, H, W) a batch must have: a raw cutout, or the model's input after its
        preprocessing (a crop changes H and W)."""
        return engine.bundle.spec.output_shape(CUTOUT_SHAPE) if preprocessed else CUTOUT_SHAPE

    @staticmethod
    def check_cutouts(
        cutouts: np.ndarray, *, raw: bool, shape: tuple[int, int, int] = CUTOUT_SHAPE, field: str = "batch"
    ) -> None:
        """Shape and value policy: (N, *shape) with 1 <= N <= MAX_PER_SUBMISSION; NaN pixels
        are legal in raw cutouts (masked; preprocessing sets them to 0); infinities never
        are; a preprocessed batch must be all finite."""
        if cutouts.ndim != 4 or tuple(cutouts.shape[1:]) != shape:
            raise RequestError(field, f"must be (N, {', '.join(map(str, shape))}), got {cutouts.shape}")
        if not 0 < len(cutouts) <= MAX_PER_SUBMISSION:
            raise RequestError(f"{field}.count", f"must be 1 to {MAX_PER_SUBMISSION}, got {len(cutouts)}")
        finite = np.isfinite(cutouts)
        limit = RAW_LIMIT if raw else PREPROCESSED_LIMIT
        # A dtype that cannot hold the limit (float16 on the wire) cannot exceed it either;
        # comparing would only overflow the limit to inf.
        floating = np.issubdtype(cutouts.dtype, np.floating)
        can_exceed = not floating or float(np.finfo(cutouts.dtype).max) > limit
        huge = int((np.abs(np.where(finite, cutouts, 0)) > limit).sum()) if can_exceed else 0
        if huge:
            what = "nanomaggies" if raw else "in a preprocessed batch"
            raise RequestError(f"{field}.data", f"holds {huge} value(s) beyond +-{limit:g} {what}")
        if finite.all():
            return
        infinite = int(np.isinf(cutouts).sum())
        if infinite:
            raise RequestError(
                f"{field}.data", f"holds {infinite} infinite value(s); only NaN (masked) pixels are allowed"
            )
        if not raw:
            raise RequestError(
                f"{field}.data", f"holds {int((~finite).sum())} NaN value(s) in a preprocessed batch"
            )

    # --- work ----------------------------------------------------------------------------

    def submit(
        self,
        cutouts: np.ndarray,
        *,
        model: str = "",
        preprocessed: bool = False,
        override: PreprocessOverride | None = None,
        return_embeddings: bool = False,
        deadline: float | None = None,
    ) -> Submission:
        """Validate and queue one piece of work. ``deadline``: a time.monotonic() value."""
        if self._draining:
            raise NotReadyError("the scorer is draining (shutting down); retry on another replica")
        name, engine = self.engine(model)
        spec = self.resolve_spec(engine, preprocessed, override)
        self.check_cutouts(cutouts, raw=spec is not None, shape=self.input_shape(engine, preprocessed))
        with self._idle:
            if self._draining:
                raise NotReadyError("the scorer is draining (shutting down); retry on another replica")
            self._in_flight += 1
        try:
            key = (name, None if spec is None else spec.to_json(), bool(return_embeddings))
            future = self.batcher.submit(key, cutouts, deadline)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)
        return Submission(future, name, engine.bundle.model_id, spec)

    def _run(self, key: Any, cutouts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        name, spec_json, embeddings = key
        spec = None if spec_json is None else PreprocessSpec.from_json(spec_json)
        return self.engines[name].infer(cutouts, spec, embeddings)

    def warm_up(self) -> None:
        for engine in self.engines.values():
            engine.infer(np.zeros((2, *CUTOUT_SHAPE), np.float32), engine.bundle.spec, True)

    @property
    def queued(self) -> int:
        return self.batcher.queued

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self, timeout_s: float) -> None:
        """Refuse new work (NotReadyError), wait at most ``timeout_s`` for accepted work, stop."""
        with self._idle:
            self._draining = True
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)
        self.batcher.close(timeout_s)

    def _finished(self, _future: Any) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()
