"""Fuzzing the scorer's request decoding: arbitrary bytes and arbitrary field values end in
a decoded batch or a RequestError (INVALID_ARGUMENT), never a crash or a hang."""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenscal.errors import RequestError
from lenscal.models import create_model
from lenscal.models.bundle import Bundle
from lenscal.preprocess import PreprocessSpec
from lenscal.rpc.arrays import decode_batch
from lenscal.rpc.scorer_codec import override_from_proto
from lenscal.scoring.core import ScoringCore
from lenscal_pb.common.v1 import arrays_pb2
from lenscal_pb.scorer.v1 import scorer_pb2

FUZZ = settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])


def _decode(request: scorer_pb2.ScoreRequest) -> None:
    try:
        cutouts, ids = decode_batch(request.batch, field="batch", channels=3, size=101, max_count=4096)
    except RequestError:
        return
    assert cutouts.shape == (request.batch.count, 3, 101, 101)
    assert not ids or len(ids) == cutouts.shape[0]


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(blob: bytes) -> None:
    try:
        request = scorer_pb2.ScoreRequest.FromString(blob)
    except DecodeError:
        return
    _decode(request)


@FUZZ
@given(
    count=st.integers(0, 2**32 - 1),
    channels=st.integers(0, 2**32 - 1),
    height=st.integers(0, 2**32 - 1),
    width=st.integers(0, 2**32 - 1),
    dtype=st.integers(0, 5),
    size=st.integers(0, 3 * 101 * 101 * 4 * 2 + 7),
    ids=st.lists(st.text(max_size=5), max_size=4),
)
def test_arbitrary_batch_fields(
    count: int, channels: int, height: int, width: int, dtype: int, size: int, ids: list[str]
) -> None:
    batch = arrays_pb2.PackedBatch(
        data=b"\x01" * size, count=count, channels=channels, height=height, width=width, dtype=dtype, ids=ids
    )
    _decode(scorer_pb2.ScoreRequest(batch=batch))


class _Engine:
    name, device = "torch", "cpu"

    def __init__(self) -> None:
        model = create_model("bottlenecked_resnet", base_ch=4)
        meta = {
            "arch": "bottlenecked_resnet",
            "embedding_dim": 32,
            "provenance": {"weights_sha256": "0" * 64},
        }
        self.bundle = Bundle(path=None, model=model, spec=PreprocessSpec(), meta=meta)  # type: ignore[arg-type]


@FUZZ
@given(
    clip=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32)),
    r_in=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32)),
    r_out=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32)),
    preprocessed=st.booleans(),
)
def test_arbitrary_preprocessing_overrides(
    clip: float | None, r_in: float | None, r_out: float | None, preprocessed: bool
) -> None:
    request = scorer_pb2.ScoreRequest(preprocessed=preprocessed)
    for name, value in (("clip_range", clip), ("annulus_r_in", r_in), ("annulus_r_out", r_out)):
        if value is not None:
            setattr(request.preprocess_override, name, value)
    try:
        spec = ScoringCore.resolve_spec(_Engine(), preprocessed, override_from_proto(request))  # type: ignore[arg-type]
    except RequestError:
        return
    if spec is not None:
        parsed = PreprocessSpec.from_json(spec.to_json())
        assert np.isfinite(parsed.clip_range) and parsed.annulus_r_out > parsed.annulus_r_in
