"""The Scorer's messages <-> library objects, both directions of each message in one place
(the client encodes what the servicer decodes, and back); tests/test_codecs.py round-trips
every pair. Arrays travel as PackedBatch (lenscal.rpc.arrays)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lenscal.preprocess_spec import PreprocessOverride, PreprocessSpec
from lenscal.rpc.arrays import decode_batch, encode_batch
from lenscal.scoring.api import ModelInfo, ScoreResult, sigmoid
from lenscal.survey import FLOAT16_MAX
from lenscal_pb.scorer.v1 import scorer_pb2

# --- ModelInfo ---------------------------------------------------------------------------


def model_info_to_proto(model: ModelInfo) -> scorer_pb2.ModelInfo:
    channels, height, width = model.input_shape
    return scorer_pb2.ModelInfo(
        name=model.name,
        model_id=model.model_id,
        architecture=model.architecture,
        channels=channels,
        height=height,
        width=width,
        preprocess_spec_json=model.spec.to_json(),
        embedding_dim=model.embedding_dim,
        engine=model.engine,
        device=model.device,
        weights_sha256=model.weights_sha256,
        is_default=model.is_default,
        bundle_sha256=model.bundle_sha256,
    )


def model_info_from_proto(m: scorer_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=m.name,
        model_id=m.model_id,
        architecture=m.architecture,
        input_shape=(m.channels, m.height, m.width),
        spec=PreprocessSpec.from_json(m.preprocess_spec_json),
        embedding_dim=m.embedding_dim,
        engine=m.engine,
        device=m.device,
        weights_sha256=m.weights_sha256,
        is_default=m.is_default,
        bundle_sha256=m.bundle_sha256,
    )


# --- ScoreRequest ------------------------------------------------------------------------


def score_request(
    block: np.ndarray,
    *,
    model: str = "",
    preprocessed: bool = False,
    override: PreprocessOverride | None = None,
    return_embeddings: bool = False,
    ids: Sequence[str] | None = None,
    tag: int = 0,
    float32: bool = False,
) -> scorer_pb2.ScoreRequest:
    """One message of cutouts: float16 on the wire unless ``float32`` or a value float16
    cannot hold."""
    dtype: Any = np.float16
    finite = block[np.isfinite(block)]
    if float32 or (finite.size and np.abs(finite).max() > FLOAT16_MAX):
        dtype = np.float32
    request = scorer_pb2.ScoreRequest(
        model=model,
        batch=encode_batch(block, dtype=dtype, ids=list(ids) if ids is not None else None),
        preprocessed=preprocessed,
        return_embeddings=return_embeddings,
        request_tag=tag,
    )
    for key, value in (override.model_dump(exclude_none=True) if override is not None else {}).items():
        setattr(request.preprocess_override, key, float(value))
    return request


def request_cutouts(
    request: scorer_pb2.ScoreRequest, *, channels: int, size: int, max_count: int
) -> tuple[np.ndarray, list[str]]:
    """The request's cutouts (a read-only view over its bytes) and ids, checked against the
    model's input (every mismatch names the field)."""
    return decode_batch(request.batch, field="batch", channels=channels, size=size, max_count=max_count)


def override_from_proto(request: scorer_pb2.ScoreRequest) -> PreprocessOverride | None:
    """The fields the caller set in ``preprocess_override`` (None when none)."""
    message = request.preprocess_override
    changes = {f: getattr(message, f) for f in PreprocessOverride.model_fields if message.HasField(f)}
    return PreprocessOverride(**changes) if changes else None


# --- ScoreResponse -----------------------------------------------------------------------


def score_response(
    logits: np.ndarray,
    embeddings: np.ndarray | None,
    *,
    ids: Sequence[str],
    model_id: str,
    tag: int,
    spec: PreprocessSpec | None,
) -> scorer_pb2.ScoreResponse:
    response = scorer_pb2.ScoreResponse(
        probabilities=sigmoid(logits).astype(np.float32).tolist(),
        logits=np.asarray(logits).tolist(),
        ids=list(ids),
        model_id=model_id,
        request_tag=tag,
        preprocess_spec_json=spec.to_json() if spec is not None else "",
    )
    if embeddings is not None:
        response.embeddings = np.ascontiguousarray(embeddings, dtype="<f4").tobytes()
        response.embedding_dim = embeddings.shape[1]
    return response


def score_result(replies: Sequence[scorer_pb2.ScoreResponse], return_embeddings: bool) -> ScoreResult:
    """The replies of one call, in order, as one ScoreResult."""
    if not replies:
        return ScoreResult(np.empty(0, np.float32), np.empty(0, np.float32), None, "")
    logits = np.concatenate([np.asarray(r.logits, dtype=np.float32) for r in replies])
    probabilities = np.concatenate([np.asarray(r.probabilities, dtype=np.float32) for r in replies])
    embeddings = None
    if return_embeddings:
        embeddings = np.concatenate(
            [np.frombuffer(r.embeddings, dtype="<f4").reshape(-1, r.embedding_dim) for r in replies]
        )
    spec_json = replies[0].preprocess_spec_json
    spec = PreprocessSpec.from_json(spec_json) if spec_json else None
    return ScoreResult(logits, probabilities, embeddings, replies[0].model_id, spec)
