"""Caffe2 `TensorProto.DataType` <-> numpy dtype, in one table."""
from __future__ import annotations

import numpy as np

# Values are caffe2.proto's TensorProto.DataType numbers (pinned in tests/unit/test_proto.py).
UNDEFINED, FLOAT, INT32, BYTE, STRING, BOOL, UINT8, INT8, UINT16, INT16, INT64 = range(11)
FLOAT16, DOUBLE, ZERO_COLLISION_HASH, REBATCHING_BUFFER = 12, 13, 14, 15

_TO_NUMPY = {
    FLOAT: np.float32, INT32: np.int32, BYTE: np.uint8, STRING: np.object_, BOOL: np.bool_,
    UINT8: np.uint8, INT8: np.int8, UINT16: np.uint16, INT16: np.int16, INT64: np.int64,
    FLOAT16: np.float16, DOUBLE: np.float64,
}
# BYTE and UINT8 are both uint8; numpy -> Caffe2 answers UINT8 as Caffe2's own tensor
# type-meta does.
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items() if k != BYTE}
_FROM_NUMPY[np.dtype(np.str_)] = STRING
_FROM_NUMPY[np.dtype(np.bytes_)] = STRING

_NAMES = {FLOAT: "FLOAT", INT32: "INT32", BYTE: "BYTE", STRING: "STRING", BOOL: "BOOL",
          UINT8: "UINT8", INT8: "INT8", UINT16: "UINT16", INT16: "INT16", INT64: "INT64",
          FLOAT16: "FLOAT16", DOUBLE: "DOUBLE", UNDEFINED: "UNDEFINED",
          ZERO_COLLISION_HASH: "ZERO_COLLISION_HASH", REBATCHING_BUFFER: "REBATCHING_BUFFER"}


def to_numpy(data_type: int) -> np.dtype:
    """numpy dtype of a Caffe2 DataType; ValueError for UNDEFINED and unknown numbers."""
    try:
        return np.dtype(_TO_NUMPY[int(data_type)])
    except KeyError:
        raise ValueError(f"DataType {data_type} ({name(data_type)}) has no numpy dtype") from None


def from_numpy(dtype) -> int:
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
        return STRING
    try:
        return _FROM_NUMPY[dtype]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no Caffe2 DataType") from None


def name(data_type: int) -> str:
    return _NAMES.get(int(data_type), f"<DataType {data_type}>")


def as_string_tensor(array: np.ndarray) -> np.ndarray:
    """What Caffe2 stores when fed a numpy array of strings: an object array of bytes.

    Caffe2 keeps strings as std::string, so an array of kind U or S, or an object array of
    str/bytes, comes back from FetchBlob as bytes objects (str encoded as UTF-8). Any other
    array is returned unchanged (not copied).
    """
    if array.dtype.kind not in "USO":
        return array
    if array.dtype.kind == "O" and not all(isinstance(v, (str, bytes)) for v in array.flat):
        return array
    out = np.empty(array.shape, dtype=object)
    out.flat[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.flat]
    return out
