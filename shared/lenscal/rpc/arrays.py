"""The packed-array wire format (``lenscal.common.v1.PackedBatch``): one ``bytes`` field
holding a C-contiguous little-endian (count, channels, height, width) array, plus its
shape, dtype and optional ids. Decoding is zero-copy; every mismatch names the field."""

from __future__ import annotations

from typing import Any

import numpy as np

from lenscal.errors import RequestError
from lenscal_pb.common.v1 import arrays_pb2

#: Proto enum value -> numpy dtype.
WIRE_DTYPES: dict[int, np.dtype[Any]] = {
    arrays_pb2.FLOAT32: np.dtype("<f4"),
    arrays_pb2.FLOAT16: np.dtype("<f2"),
}
WIRE_CODES: dict[np.dtype[Any], Any] = {dtype: code for code, dtype in WIRE_DTYPES.items()}


def decode_batch(
    message: Any,
    *,
    field: str,
    channels: int | None = None,
    size: int | None = None,
    max_count: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """(array view over the message bytes (read-only, zero-copy), ids). Every mismatch is a
    RequestError naming ``field`` and the numbers that disagree."""
    count, c, h, w = int(message.count), int(message.channels), int(message.height), int(message.width)
    if int(message.dtype) not in WIRE_DTYPES:
        raise RequestError(
            f"{field}.dtype", f"must be FLOAT32 or FLOAT16, got enum value {int(message.dtype)}"
        )
    dtype = WIRE_DTYPES[int(message.dtype)]
    if count <= 0:
        raise RequestError(f"{field}.count", "must be > 0")
    if max_count is not None and count > max_count:
        raise RequestError(f"{field}.count", f"{count} exceeds the limit of {max_count} per message")
    if channels is not None and c != channels:
        raise RequestError(f"{field}.channels", f"is {c}, expected {channels}")
    if h <= 0 or w <= 0:
        raise RequestError(f"{field}.height/width", f"must be > 0, got {h}x{w}")
    if size is not None and (h, w) != (size, size):
        raise RequestError(f"{field}.height/width", f"is {h}x{w}, expected {size}x{size}")
    expected = count * c * h * w * dtype.itemsize
    if len(message.data) != expected:
        raise RequestError(
            f"{field}.data",
            f"has {len(message.data)} bytes; count*channels*height*width*itemsize = "
            f"{count}*{c}*{h}*{w}*{dtype.itemsize} = {expected}",
        )
    ids = list(message.ids)
    if ids and len(ids) != count:
        raise RequestError(f"{field}.ids", f"has {len(ids)} entries for {count} images")
    return np.frombuffer(message.data, dtype=dtype).reshape(count, c, h, w), ids


def encode_batch(
    array: np.ndarray, *, dtype: Any = np.float32, ids: list[str] | None = None
) -> arrays_pb2.PackedBatch:
    """A PackedBatch message from an (N, C, H, W) array."""
    code = wire_code(dtype)
    arr = np.ascontiguousarray(array, dtype=WIRE_DTYPES[code])
    if arr.ndim != 4:
        raise RequestError("batch", f"must be (N, C, H, W), got shape {arr.shape}")
    n, c, h, w = arr.shape
    return arrays_pb2.PackedBatch(
        data=arr.tobytes(), count=n, channels=c, height=h, width=w, dtype=code, ids=ids or []
    )


def wire_code(dtype: Any) -> Any:
    """The DType enum value of a numpy dtype (float32 or float16)."""
    wire = np.dtype(dtype).newbyteorder("<")
    if wire not in WIRE_CODES:
        raise RequestError("dtype", f"unsupported wire dtype {dtype}; use float32 or float16")
    return WIRE_CODES[wire]


def wire_dtype(code: int, *, field: str) -> np.dtype[Any]:
    """Requested return dtype: 0 (unset) means float32."""
    if code == 0:
        return np.dtype("<f4")
    if code not in WIRE_DTYPES:
        raise RequestError(field, f"must be FLOAT32 or FLOAT16, got enum value {code}")
    return WIRE_DTYPES[code]
