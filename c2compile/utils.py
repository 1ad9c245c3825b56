"""Helpers of `caffe2.python.utils`: Python values <-> `Argument`, numpy <-> `TensorProto`.

`MakeArgument` decides which `Argument` field a Python value goes to. The rules are Caffe2's
(so a NetDef built here is the one Caffe2 would build), with one relaxation noted inline.
"""
from __future__ import annotations

import collections.abc
import copy
import functools
import sys

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message

from c2compile import dtypes
from c2compile.proto import caffe2_pb2

OPTIMIZER_ITERATION_NAME = "optimizer_iteration"
ITERATION_MUTEX_NAME = "iteration_mutex"

_TP = caffe2_pb2.TensorProto


def _type_name(dt: int) -> str:
    return _TP.DataType.Name(dt) if dt in _TP.DataType.values() else f"<DataType {dt}>"


# ----------------------------------------------------------------------------- arguments

def _is_float(v) -> bool:
    # Caffe2 takes float and float64 elements only, and rejects a list of np.float32
    # scalars; we also take any np.floating (no Caffe2 program relies on that error).
    return type(v) is float or isinstance(v, np.floating)


def _is_int(v) -> bool:
    # bools count as ints, as in Caffe2 (Argument has no bool field).
    return type(v) in (int, bool) or isinstance(v, (np.integer, np.bool_))


def _is_str(v) -> bool:
    return isinstance(v, (bytes, str))


def MakeArgument(key: str, value) -> caffe2_pb2.Argument:
    """An `Argument` named `key` holding `value` in the field Caffe2 would choose.

    bool/int -> i, float -> f, str (utf-8)/bytes -> s, NetDef -> n, any other protobuf
    message -> s (serialized); numpy scalars count as their Python type and arrays as flat
    lists; a list of floats -> floats, of ints/bools -> ints, of str/bytes -> strings, of
    NetDefs -> nets, of other messages -> strings (serialized). An empty list sets no value.
    Mixed lists ([1, 2.5]) and other types raise ValueError, as in Caffe2.
    """
    arg = caffe2_pb2.Argument()
    arg.name = key

    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:  # the common case: weights; no per-element checks
            arg.floats.extend(value.ravel().tolist())
            return arg
        value = value.ravel().tolist()
    elif isinstance(value, np.generic):
        value = value.item()

    if type(value) is float:
        arg.f = value
    elif type(value) in (int, bool):
        arg.i = int(value)  # upb rejects a bool for an int64 field
    elif isinstance(value, bytes):
        arg.s = value
    elif isinstance(value, str):
        arg.s = value.encode("utf-8")
    elif isinstance(value, caffe2_pb2.NetDef):
        arg.n.CopyFrom(value)
    elif isinstance(value, Message):
        arg.s = value.SerializeToString()
    elif isinstance(value, collections.abc.Iterable):
        _set_list(arg, key, list(value))  # list(): a generator must be read only once
    else:
        raise ValueError(f"Unknown argument type: key={key} value={value!r}, value type="
                         f"{type(value).__name__} (expected a number, string, protobuf "
                         "message, or a list of one of those)")
    return arg


def _set_list(arg, key: str, values: list) -> None:
    # The order of the checks matters for the empty list: Caffe2 files it under floats,
    # which leaves every value field unset.
    if all(_is_float(v) for v in values):
        arg.floats.extend(float(v) for v in values)
    elif all(_is_int(v) for v in values):
        arg.ints.extend(int(v) for v in values)
    elif all(_is_str(v) for v in values):
        arg.strings.extend(v.encode("utf-8") if isinstance(v, str) else v for v in values)
    elif all(isinstance(v, caffe2_pb2.NetDef) for v in values):
        arg.nets.extend(values)
    elif all(isinstance(v, Message) for v in values):
        arg.strings.extend(v.SerializeToString() for v in values)
    else:
        kinds = sorted({type(v).__name__ for v in values})
        raise ValueError(f"Unknown iterable argument type: key={key} value={values!r}, "
                         f"element types={kinds} (a list argument must hold only floats, "
                         "only ints, only strings or only protobuf messages)")


# Value fields of Argument in declaration order; the first one set is the argument's value.
_ARG_FIELDS = [f for f in caffe2_pb2.Argument.DESCRIPTOR.fields if f.name != "name"]


def ArgumentValue(arg: caffe2_pb2.Argument):
    """The value an Argument holds (scalars as is, lists as lists); None if none is set."""
    for field in _ARG_FIELDS:
        if field.is_repeated:
            values = getattr(arg, field.name)
            if len(values):
                return list(values)
        elif arg.HasField(field.name):
            return getattr(arg, field.name)
    return None


def ArgsToDict(args) -> dict:
    """{name: value} of a list of Arguments; unnamed arguments are skipped."""
    return {a.name: ArgumentValue(a) for a in args if a.HasField("name")}


# ----------------------------------------------------------------------------- tensors

# Types stored one element per int32_data entry (float16 as its 16-bit pattern); Caffe2
# may also write them as raw little-endian bytes in byte_data.
_INT32_HOLDER = {_TP.BOOL, _TP.UINT8, _TP.INT8, _TP.UINT16, _TP.INT16, _TP.FLOAT16}


def tensor_proto_values(tensor: caffe2_pb2.TensorProto, count: int | None = None) -> np.ndarray:
    """The flat values a TensorProto holds, read as Caffe2's C++ deserializer reads them.

    For a chunk of a larger tensor (one with a `segment`) these are the segment's values.
    With `count`, a proto holding another number of values is a ValueError (Caffe2 enforces
    the field size too). STRING gives an object array of bytes.
    """
    dt = tensor.data_type
    if dt == _TP.STRING:
        flat = np.empty(len(tensor.string_data), dtype=object)
        flat[:] = list(tensor.string_data)
    elif dt in (_TP.UNDEFINED, _TP.ZERO_COLLISION_HASH, _TP.REBATCHING_BUFFER) or \
            dt not in _TP.DataType.values():
        raise ValueError(f"TensorProto '{tensor.name}' has data_type {_type_name(dt)}, "
                         "which does not hold a numpy-convertible tensor")
    else:
        flat = _numeric_values(tensor, dtypes.to_numpy(dt))
    if count is not None and flat.size != count:
        raise ValueError(f"TensorProto '{tensor.name}' holds {flat.size} {_type_name(dt)} "
                         f"values where {count} are expected")
    return flat


def _numeric_values(tensor: caffe2_pb2.TensorProto, dtype: np.dtype) -> np.ndarray:
    dt = tensor.data_type
    if tensor.data_format == _TP.FMT_BFLOAT16:
        if dt != _TP.FLOAT:
            raise ValueError(f"TensorProto '{tensor.name}': bfloat16 data for "
                             f"{_type_name(dt)}")
        bits = np.frombuffer(tensor.raw_data, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    if tensor.data_format != _TP.FMT_PROTOBUF:
        raise ValueError(f"TensorProto '{tensor.name}': unknown data_format "
                         f"{tensor.data_format}")
    if tensor.HasField("raw_data"):
        flat = np.frombuffer(tensor.raw_data, dtype=dtype.newbyteorder("<"))
    elif dt == _TP.BYTE or (dt in _INT32_HOLDER and tensor.HasField("byte_data")):
        flat = np.frombuffer(tensor.byte_data, dtype=dtype.newbyteorder("<"))
    elif dt == _TP.FLOAT:
        flat = np.asarray(tensor.float_data, dtype=np.float32)
    elif dt == _TP.DOUBLE:
        flat = np.asarray(tensor.double_data, dtype=np.float64)
    elif dt == _TP.INT64:
        flat = np.asarray(tensor.int64_data, dtype=np.int64)
    elif dt == _TP.FLOAT16:
        flat = np.asarray(tensor.int32_data, dtype=np.int64).astype(np.uint16).view(np.float16)
    else:  # INT32 and the small integer types and bool
        flat = np.asarray(tensor.int32_data, dtype=np.int64).astype(dtype)
    return flat.astype(dtype, copy=True)


def Caffe2TensorToNumpyArray(tensor: caffe2_pb2.TensorProto) -> np.ndarray:
    """The numpy array a TensorProto holds, for every tensor DataType.

    Unlike Caffe2's Python helper (float/double/int types only, INT32 read as int64) this
    follows Caffe2's C++ deserializer: INT32 stays int32, BYTE reads byte_data as uint8,
    STRING gives an object array of bytes, byte_data holders and bfloat16 raw_data work.
    """
    shape = tuple(tensor.dims)
    if tensor.HasField("segment"):
        seg = tensor.segment
        n = seg.end - seg.begin
        if n != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"TensorProto '{tensor.name}' is a chunk (segment [{seg.begin}, "
                             f"{seg.end}) of a {list(shape)} tensor); join the chunks first")
    return tensor_proto_values(tensor).reshape(shape)


def set_tensor_proto_values(tensor: caffe2_pb2.TensorProto, flat: np.ndarray) -> None:
    """Set `tensor`'s data_type and value field from the 1-D array `flat`, in the fields
    Caffe2 1.x's C++ serializer writes by default: float_data, double_data, int64_data;
    int32_data for INT32, BOOL, UINT8, INT8, UINT16, INT16 and FLOAT16 (as its 16-bit
    pattern); string_data for strings (str as UTF-8). BYTE is never written (UINT8 is).
    """
    if flat.dtype.kind in "OUS":
        tensor.data_type = _TP.STRING
        for v in flat:
            if not isinstance(v, (bytes, str)):
                raise ValueError(f"a STRING tensor holds bytes or str, got {type(v).__name__}")
            tensor.string_data.append(v.encode("utf-8") if isinstance(v, str) else v)
        return
    try:
        dt = dtypes.from_numpy(flat.dtype)
    except ValueError:
        raise ValueError(f"numpy dtype {flat.dtype} has no Caffe2 DataType (use float32/64, "
                         "int8/16/32/64, uint8/16, bool, float16 or strings)") from None
    tensor.data_type = dt
    if dt == _TP.FLOAT:
        tensor.float_data.extend(flat.tolist())
    elif dt == _TP.DOUBLE:
        tensor.double_data.extend(flat.tolist())
    elif dt == _TP.INT64:
        tensor.int64_data.extend(flat.tolist())
    elif dt == _TP.FLOAT16:
        tensor.int32_data.extend(flat.view(np.uint16).tolist())
    else:
        tensor.int32_data.extend(flat.astype(np.int32).tolist())


def NumpyArrayToCaffe2Tensor(arr, name: str | None = None) -> caffe2_pb2.TensorProto:
    """A TensorProto holding `arr`, in the fields Caffe2's C++ serializer uses by default."""
    arr = np.asarray(arr)
    tensor = caffe2_pb2.TensorProto()
    tensor.dims.extend(arr.shape)
    if name:
        tensor.name = name
    set_tensor_proto_values(tensor, arr.ravel())
    return tensor


# ----------------------------------------------------------------------------- protos

def TryReadProtoWithClass(cls, s):
    """Parse `s` (text or binary protobuf) as a `cls`; DecodeError if it is neither."""
    obj = cls()
    try:
        text_format.Parse(s, obj)
        return obj
    except (text_format.ParseError, UnicodeDecodeError):
        obj = cls()
        obj.ParseFromString(s if isinstance(s, bytes) else s.encode("utf-8"))
        return obj


def GetContentFromProto(obj, function_map):
    """Call the function mapped to `obj`'s exact class; None if no class matches."""
    for cls, func in function_map.items():
        if type(obj) is cls:
            return func(obj)
    return None


def GetContentFromProtoString(s, function_map):
    """Parse `s` as the first class of `function_map` that fits and call its function."""
    for cls, func in function_map.items():
        try:
            return func(TryReadProtoWithClass(cls, s))
        except DecodeError:
            continue
    raise DecodeError("Cannot find a fit protobuffer class.")


def ConvertProtoToBinary(proto_class, filename, out_filename) -> None:
    """Convert a text-format proto file to binary."""
    with open(filename) as f:
        proto = TryReadProtoWithClass(proto_class, f.read())
    with open(out_filename, "wb") as f:
        f.write(proto.SerializeToString())


def OpAlmostEqual(op_a, op_b, ignore_fields=None) -> bool:
    """Whether two OperatorDefs are equal once the fields in `ignore_fields` are cleared."""
    ignore = ignore_fields or []
    if not isinstance(ignore, list):
        ignore = [ignore]

    def clean(op):
        op = copy.deepcopy(op)
        for field in ignore:
            op.ClearField(field)
        return op
    return clean(op_a) == clean(op_b)


# ----------------------------------------------------------------------------- misc

def NHWC2NCHW(tensor):
    assert tensor.ndim >= 1
    return tensor.transpose((0, tensor.ndim - 1) + tuple(range(1, tensor.ndim - 1)))


def NCHW2NHWC(tensor):
    assert tensor.ndim >= 2
    return tensor.transpose((0,) + tuple(range(2, tensor.ndim)) + (1,))


def raiseIfNotEqual(a, b, msg):
    if a != b:
        raise Exception(f"{msg}. {a} != {b}")


def BuildUniqueMutexIter(init_net, net, iter=None, iter_mutex=None, iter_val=0):
    """The iteration counter blob shared by optimizers, created once in `init_net`.

    Adds a CPU ConstantFill(int64) + CreateMutex to `init_net` and an AtomicIter to `net`
    unless `init_net` already defines the counter.
    """
    from c2compile import core  # core imports utils
    iter = iter if iter is not None else OPTIMIZER_ITERATION_NAME
    iter_mutex = iter_mutex if iter_mutex is not None else ITERATION_MUTEX_NAME
    if init_net.BlobIsDefined(iter):
        return init_net.GetBlobRef(iter)
    # Caffe2 1.10 pins the counter to the CPU with this override hint on its device option.
    cpu = core.DeviceOption(caffe2_pb2.CPU, extra_info=["device_type_override:cpu"])
    with core.DeviceScope(cpu):
        iteration = init_net.ConstantFill([], iter, shape=[1], value=iter_val,
                                          dtype=core.DataType.INT64)
        iter_mutex = init_net.CreateMutex([], [iter_mutex])
        net.AtomicIter([iter_mutex, iteration], [iteration])
    return iteration


def debug(f):
    """Decorator: drop into pdb post-mortem when `f` raises (Caffe2's DebugMode)."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except Exception:
            import pdb
            print(sys.exc_info()[1])
            pdb.post_mortem()
            sys.exit(1)
    return wrapper
