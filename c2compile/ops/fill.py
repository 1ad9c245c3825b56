"""Fill ops: tensors made from arguments (ConstantFill, GivenTensor*Fill) or drawn at random
(GaussianFill, UniformFill, UniformIntFill, XavierFill, MSRAFill).

Every fill shares Caffe2's FillerOp shape logic (`_fill_shape`):

* no input: the output shape is the `shape` argument (a list; unset means a 0-d tensor);
  `extra_shape` and `input_as_shape` need an input;
* one input: the output takes that input's shape, or with `input_as_shape=1` the input is
  a non-empty 1-D int64 tensor holding the shape; `extra_shape` dims are appended either way;
  `shape` must not be set then.

Random fills draw only from the op's generator (`ctx.rng`, seeded by
DeviceOption.random_seed), so an op gives new numbers on every run while two ops with the
same seed give the same numbers.

No gradient flows through a fill (Caffe2 registers NO_GRADIENT for every one): each is
marked NO_GRADIENT, so the backward pass stops there silently, even at a fill that reads
an input for its shape.
"""
from __future__ import annotations

import numpy as np

from c2compile import dtypes
from c2compile.errors import ArgumentError, ShapeError
from c2compile.ops.gradient import NO_GRADIENT
from c2compile.ops.schema import REQUIRED, Arg, TensorType, op

# ----------------------------------------------------------------------------- shared shape logic

SHAPE_ARGS = (
    Arg("shape", "ints", None, "output shape when the op has no input"),
    Arg("extra_shape", "ints", None, "dims appended to the input-derived shape"),
    Arg("input_as_shape", "bool", False, "the input is a 1-D int64 tensor holding the shape"),
    # Pre-1.0 Caffe2 fills ran only on their first run unless run_once=0; Caffe2 1.x dropped
    # the argument and fills on every run. The basics tutorial still passes run_once=0, so
    # it is accepted, and behaves as in 1.x: every run fills.
    Arg("run_once", "bool", False, "legacy, no effect (as in Caffe2 1.x)"),
)


def _type_of(value) -> TensorType:
    """What a shape rule would know of a runtime value (so both paths share one check)."""
    if isinstance(value, np.ndarray):
        return TensorType(value.shape, value.dtype)
    return TensorType(None, None)


def _raw_arg(ctx, name: str):
    """The Argument proto named `name` as the NetDef wrote it, or None."""
    for a in ctx.proto.arg:
        if a.name == name:
            return a
    return None


def _dims_arg(ctx, name: str) -> list[int]:
    dims = getattr(ctx.args, name) or []
    bad = [d for d in dims if d < 0]
    if bad:
        ctx.fail(f"{name}={dims} has a negative dimension", cls=ArgumentError)
    return list(dims)


def _check_fill_args(ctx) -> None:
    """FillerOp's argument rules, checked the same way by shape rule and reference."""
    if ctx.num_inputs:
        if ctx.args.shape:
            ctx.fail(f"cannot set the shape argument ({ctx.args.shape}) and pass in an input "
                     f"('{ctx.inputs[0]}') at the same time", cls=ArgumentError)
    else:
        if ctx.args.extra_shape:
            ctx.fail("cannot set extra_shape when there is no input", cls=ArgumentError)
        if ctx.args.input_as_shape:
            ctx.fail("an input must be given if input_as_shape is true", cls=ArgumentError)
        raw = _raw_arg(ctx, "shape")
        if raw is not None and raw.HasField("i"):
            ctx.fail(f"'shape' argument was a scalar ({raw.i}), a list is expected",
                     cls=ArgumentError)
    _dims_arg(ctx, "shape")
    _dims_arg(ctx, "extra_shape")


def _infer_fill_shape(ctx, ins) -> tuple[int, ...] | None:
    """Static output shape of a fill (None when it depends on data)."""
    _check_fill_args(ctx)
    if not ins:
        return tuple(_dims_arg(ctx, "shape"))
    src = ins[0]
    if ctx.args.input_as_shape:
        if src.dtype is not None and src.dtype != np.dtype(np.int64):
            ctx.fail(f"with input_as_shape=1 the input '{ctx.inputs[0]}' must be a 1-D int64 "
                     f"tensor, got dtype {src.dtype}", blob=ctx.inputs[0])
        if src.shape is not None and (len(src.shape) != 1 or src.shape[0] == 0):
            ctx.fail(f"with input_as_shape=1 the input '{ctx.inputs[0]}' must be a non-empty "
                     f"1-D tensor, got shape {list(src.shape)}", blob=ctx.inputs[0])
        return None
    if src.shape is None:
        return None
    return tuple(src.shape) + tuple(_dims_arg(ctx, "extra_shape"))


def _fill_shape(ctx, inputs) -> tuple[int, ...]:
    """Runtime output shape of a fill, from its arguments and first input."""
    _check_fill_args(ctx)
    if not inputs:
        return tuple(_dims_arg(ctx, "shape"))
    src = inputs[0]
    if ctx.args.input_as_shape:
        name = ctx.inputs[0]
        if not isinstance(src, np.ndarray) or src.dtype != np.int64:
            what = f"dtype {src.dtype}" if isinstance(src, np.ndarray) else type(src).__name__
            ctx.fail(f"with input_as_shape=1 the input '{name}' must be a 1-D int64 tensor, "
                     f"got {what}", blob=name)
        if src.ndim != 1 or src.size == 0:
            ctx.fail(f"with input_as_shape=1 the input '{name}' must be a non-empty 1-D "
                     f"tensor, got shape {list(src.shape)}", blob=name)
        dims = [int(d) for d in src]
        if any(d < 0 for d in dims):
            ctx.fail(f"input '{name}' asks for shape {dims}, which has a negative dimension",
                     blob=name)
        shape = tuple(dims)
    else:
        shape = tuple(np.shape(src))
    return shape + tuple(_dims_arg(ctx, "extra_shape"))


def _check_rank(ctx, shape, min_rank: int, why: str) -> None:
    if shape is not None and len(shape) < min_rank:
        ctx.fail(f"{ctx.type} needs an output of at least {min_rank} dimension(s) ({why}), "
                 f"got shape {list(shape)}")


def _fill_op(type_, *, args=(), inputs=(0, 1), dtype=None, infer_dtype=None, stateful=False,
             min_rank=0, rank_why=""):
    """Register a fill: its own args plus the shape args, and the shared shape rule.

    `dtype` is the fixed output dtype, or `infer_dtype(ctx)` computes it from the arguments.
    """
    def infer(ctx, *ins):
        shape = _infer_fill_shape(ctx, ins[:1])
        _check_rank(ctx, shape, min_rank, rank_why)
        out_dtype = infer_dtype(ctx) if infer_dtype else dtype
        if len(ins) == 2:  # ConstantFill's value input
            _check_value_input(ctx, ins[1], out_dtype)
        return [TensorType(shape, out_dtype)]
    return op(type_, inputs=inputs, outputs=1, inplace=[(0, 0)], args=[*args, *SHAPE_ARGS],
              infer=infer, stateful=stateful, grad=NO_GRADIENT)


# ----------------------------------------------------------------------------- ConstantFill

# The DataTypes ConstantFill can fill; BYTE, FLOAT16 and UNDEFINED are rejected as in Caffe2.
_CONSTANT_DTYPES = (dtypes.FLOAT, dtypes.DOUBLE, dtypes.BOOL, dtypes.INT8, dtypes.INT16,
                    dtypes.INT32, dtypes.INT64, dtypes.UINT8, dtypes.UINT16, dtypes.STRING)


def _dtype_arg(ctx, allowed) -> int:
    dt = ctx.args.dtype
    if dt == dtypes.UNDEFINED:
        ctx.fail(f"{ctx.type} cannot have an undefined 'dtype' argument", cls=ArgumentError)
    if dt not in allowed:
        names = ", ".join(f"{dtypes.name(d)}={d}" for d in allowed)
        ctx.fail(f"unexpected dtype={dt} ({dtypes.name(dt)}); {ctx.type} takes {names}",
                 cls=ArgumentError)
    return dt


def _constant_data_type(ctx) -> int:
    """Caffe2's rule: dtype if given, else the kind of `value` (float -> FLOAT, int -> INT64)."""
    if ctx.has("dtype"):
        return _dtype_arg(ctx, _CONSTANT_DTYPES)
    raw = _raw_arg(ctx, "value")
    if raw is not None and not raw.HasField("f") and raw.HasField("i"):
        return dtypes.INT64
    return dtypes.FLOAT


def _int_value(ctx, raw, name: str, dtype: np.dtype) -> int:
    """An integer argument read exactly from field i, range-checked for `dtype`."""
    if not raw.HasField("i"):
        ctx.fail(f"argument '{name}' must be an integer (field i) for dtype {dtype}, "
                 f"got {raw.f!r}", cls=ArgumentError)
    v = int(raw.i)
    if dtype != np.bool_:
        info = np.iinfo(dtype)
        if not info.min <= v <= info.max:
            ctx.fail(f"argument '{name}'={v} cannot be represented as {dtype}",
                     cls=ArgumentError)
    return v


def _check_value_input(ctx, t: TensorType, np_dtype) -> None:
    """ConstantFill's optional input V: one element of the output's dtype."""
    name = ctx.inputs[1]
    if np.dtype(np_dtype) == np.object_:
        ctx.fail("ConstantFill cannot take a STRING value from a tensor", cls=ArgumentError)
    if t.dtype is None and t.shape is None:
        return
    if t.dtype != np.dtype(np_dtype):
        ctx.fail(f"value input '{name}' has dtype {t.dtype}; the output is "
                 f"{np.dtype(np_dtype)}", blob=name)
    if t.shape is not None and t.size != 1:
        ctx.fail(f"value input '{name}' must have 1 element, got shape {list(t.shape)}",
                 blob=name)


def _constant_value(ctx, dt: int):
    np_dtype = dtypes.to_numpy(dt)
    raw = _raw_arg(ctx, "value")
    if dt == dtypes.STRING:
        return b""  # a string value cannot get here: it does not parse as a float argument
    if raw is None:
        return np_dtype.type(0)
    if np_dtype.kind == "f":
        return np_dtype.type(raw.f if raw.HasField("f") else raw.i)
    return np_dtype.type(_int_value(ctx, raw, "value", np_dtype))


@_fill_op("ConstantFill", inputs=(0, 2),
          args=[Arg("value", "float", 0.0, "the fill value (its kind sets dtype when unset)"),
                Arg("dtype", "int", dtypes.FLOAT, "TensorProto.DataType of the output")],
          infer_dtype=lambda ctx: dtypes.to_numpy(_constant_data_type(ctx)))
def constant_fill(ctx, *inputs):
    """Fill with `value` (or with the one element of the optional second input V)."""
    dt = _constant_data_type(ctx)
    np_dtype = dtypes.to_numpy(dt)
    shape = _fill_shape(ctx, inputs[:1])
    value = _constant_value(ctx, dt)
    if len(inputs) == 2:
        _check_value_input(ctx, _type_of(inputs[1]), np_dtype)
        value = inputs[1].reshape(-1)[0]
    if dt == dtypes.STRING:
        out = np.empty(shape, dtype=object)
        out.fill(value)
        return out
    return np.full(shape, value, dtype=np_dtype)


# ----------------------------------------------------------------------------- GivenTensor*Fill

_GIVEN_DTYPES = (dtypes.FLOAT, dtypes.DOUBLE, dtypes.BOOL, dtypes.INT16, dtypes.INT32,
                 dtypes.INT64, dtypes.STRING)


def _given_values(ctx, np_dtype: np.dtype, shape) -> np.ndarray:
    """The `values` argument as a `np_dtype` array of `shape` (element counts must match)."""
    raw = _raw_arg(ctx, "values")
    if np_dtype == np.object_:
        vals = np.empty(len(raw.strings), dtype=object)
        vals[:] = [bytes(s) for s in raw.strings]
    elif np_dtype.kind == "f":
        vals = np.array(list(raw.floats) or list(raw.ints), dtype=np_dtype)
    else:
        if raw.floats:
            ctx.fail(f"values must be integers (field ints) for a {np_dtype} fill, got floats",
                     cls=ArgumentError)
        ints = [int(v) for v in raw.ints]
        if np_dtype == np.bool_:
            vals = np.array([v != 0 for v in ints], dtype=np.bool_)
        else:
            info = np.iinfo(np_dtype)
            bad = [v for v in ints if not info.min <= v <= info.max]
            if bad:
                ctx.fail(f"values {bad[:4]} cannot be represented as {np_dtype}",
                         cls=ArgumentError)
            vals = np.array(ints, dtype=np_dtype)
    size = int(np.prod(shape, dtype=np.int64))
    if vals.size != size:
        where = (f"input '{ctx.inputs[0]}'" if ctx.num_inputs else f"shape={list(shape)}")
        ctx.fail(f"{vals.size} values given for an output of shape {list(shape)} ({size} "
                 f"elements, from {where})",
                 cls=ShapeError if ctx.num_inputs else ArgumentError)
    return vals.reshape(shape)


def _given_data_type(ctx) -> int:
    if not ctx.has("dtype"):
        return dtypes.FLOAT
    dt = _dtype_arg(ctx, _GIVEN_DTYPES)
    if dt == dtypes.STRING:
        ctx.unsupported("GivenTensorFill with dtype=STRING (string values do not parse as "
                        "this op's float 'values'); use GivenTensorStringFill")
    return dt


@_fill_op("GivenTensorFill",
          args=[Arg("values", "floats", REQUIRED, "the output's elements, row-major"),
                Arg("dtype", "int", dtypes.FLOAT, "TensorProto.DataType of the output")],
          infer_dtype=lambda ctx: dtypes.to_numpy(_given_data_type(ctx)))
def given_tensor_fill(ctx, *inputs):
    """The output holds `values` (float32, or `dtype`) in the fill's shape."""
    np_dtype = dtypes.to_numpy(_given_data_type(ctx))
    return _given_values(ctx, np_dtype, _fill_shape(ctx, inputs))


def _typed_given_fill(type_, kind, np_dtype):
    def fill(ctx, *inputs):
        return _given_values(ctx, np.dtype(np_dtype), _fill_shape(ctx, inputs))
    what = "bytes objects" if np.dtype(np_dtype) == object else str(np.dtype(np_dtype))
    fill.__doc__ = f"The output holds `values` as {what} in the fill's shape."
    return _fill_op(type_, dtype=np_dtype,
                    args=[Arg("values", kind, REQUIRED, "the output's elements, row-major"),
                          Arg("dtype", "int", None,
                              "ignored, as Caffe2 ignores it here: the op's type fixes the "
                              "output's (only GivenTensorFill reads dtype)")])(fill)


given_tensor_double_fill = _typed_given_fill("GivenTensorDoubleFill", "floats", np.float64)
given_tensor_int_fill = _typed_given_fill("GivenTensorIntFill", "ints", np.int32)
given_tensor_int16_fill = _typed_given_fill("GivenTensorInt16Fill", "ints", np.int16)
given_tensor_int64_fill = _typed_given_fill("GivenTensorInt64Fill", "ints", np.int64)
given_tensor_bool_fill = _typed_given_fill("GivenTensorBoolFill", "ints", np.bool_)
given_tensor_string_fill = _typed_given_fill("GivenTensorStringFill", "strs", np.object_)


# ----------------------------------------------------------------------------- random fills

def _std_check(ctx) -> None:
    if ctx.args.std < 0:
        ctx.fail(f"std={ctx.args.std} must not be negative", cls=ArgumentError)


@_fill_op("GaussianFill", args=[Arg("mean", "float", 0.0), Arg("std", "float", 1.0)],
          dtype=np.float32, stateful=True)
def gaussian_fill(ctx, *inputs):
    """float32 samples of N(mean, std**2)."""
    _std_check(ctx)
    shape = _fill_shape(ctx, inputs)
    x = ctx.rng.standard_normal(shape, dtype=np.float32)
    return (x * np.float32(ctx.args.std) + np.float32(ctx.args.mean)).astype(np.float32)


def _uniform_checks(ctx, ins_dtype, ins=()) -> None:
    """UniformFill/UniformIntFill take 0, 1 or 3 inputs; with 3, min/max come from inputs."""
    if ctx.num_inputs == 2:
        ctx.fail(f"{ctx.type} takes 0, 1 or 3 inputs (shape source, then min and max), got 2",
                 cls=ArgumentError)
    if ctx.num_inputs == 3:
        for name in ("min", "max"):
            if ctx.has(name):
                ctx.fail(f"cannot set both the {name} argument and the {name} input blob",
                         cls=ArgumentError)
        for i, t in ((1, ins[1] if len(ins) > 1 else None), (2, ins[2] if len(ins) > 2 else None)):
            if t is None:
                continue
            if t.dtype is not None and t.dtype != np.dtype(ins_dtype):
                ctx.fail(f"{('min', 'max')[i - 1]} input '{ctx.inputs[i]}' has dtype {t.dtype};"
                         f" {ctx.type} takes {np.dtype(ins_dtype)}", blob=ctx.inputs[i])
            if t.shape is not None and t.size != 1:
                ctx.fail(f"{('min', 'max')[i - 1]} input '{ctx.inputs[i]}' must be a scalar "
                         f"(1 element), got shape {list(t.shape)}", blob=ctx.inputs[i])
    elif not ctx.args.min < ctx.args.max:
        ctx.fail(f"max ({ctx.args.max}) must be bigger than min ({ctx.args.min})",
                 cls=ArgumentError)


def _uniform_op(type_, kind, np_dtype, default_min, default_max, draw):
    def infer(ctx, *ins):
        _uniform_checks(ctx, np_dtype, ins)
        shape = _infer_fill_shape(ctx, ins[:1])
        if ctx.num_inputs == 3:
            if shape is not None and len(shape) == 0:
                ctx.fail(f"with min/max inputs the output must have at least 1 dimension "
                         f"(its first one is 0 when min > max), got a 0-d shape",
                         blob=ctx.inputs[0])
            shape = None  # dim 0 is 0 when min > max
        return [TensorType(shape, np_dtype)]

    def fill(ctx, *inputs):
        _uniform_checks(ctx, np_dtype, [_type_of(x) for x in inputs])
        shape = _fill_shape(ctx, inputs[:1])
        lo, hi = ctx.args.min, ctx.args.max
        if len(inputs) == 3:
            if len(shape) == 0:
                ctx.fail("with min/max inputs the output must have at least 1 dimension "
                         "(its first one is 0 when min > max), got a 0-d shape",
                         blob=ctx.inputs[0])
            lo, hi = inputs[1].reshape(-1)[0].item(), inputs[2].reshape(-1)[0].item()
            if lo > hi:
                return np.zeros((0,) + tuple(shape[1:]), dtype=np_dtype)
        return draw(ctx.rng, shape, lo, hi)

    fill.__doc__ = (f"{np.dtype(np_dtype)} samples uniform in [min, max] (from the arguments,"
                    " or from inputs 1 and 2, then an empty first dim when min > max).")
    op(type_, inputs=(0, 3), outputs=1, inplace=[(0, 0)],
       args=[Arg("min", kind, default_min), Arg("max", kind, default_max), *SHAPE_ARGS],
       infer=infer, stateful=True, grad=NO_GRADIENT)(fill)
    return fill


def _draw_uniform(rng, shape, lo, hi):
    x = rng.uniform(np.float32(lo), np.float32(hi), size=shape).astype(np.float32)
    return np.clip(x, np.float32(lo), np.float32(hi))  # float32 rounding may reach `hi`


def _draw_uniform_int(rng, shape, lo, hi):
    return rng.integers(int(lo), int(hi), size=shape, dtype=np.int32, endpoint=True)


uniform_fill = _uniform_op("UniformFill", "float", np.float32, 0.0, 1.0, _draw_uniform)
uniform_int_fill = _uniform_op("UniformIntFill", "int", np.int32, 0, 1, _draw_uniform_int)


@_fill_op("XavierFill", dtype=np.float32, stateful=True, min_rank=1,
          rank_why="fan_in = size / shape[0]")
def xavier_fill(ctx, *inputs):
    """Uniform in [-s, s], s = sqrt(3 / fan_in), fan_in = size // shape[0] (integer division).

    Empty outputs (a 0 anywhere in the shape) come back empty; Caffe2 divided by zero.
    """
    shape = _fill_shape(ctx, inputs)
    _check_rank(ctx, shape, 1, "fan_in = size / shape[0]")
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return np.zeros(shape, np.float32)
    scale = np.sqrt(np.float32(3) / np.float32(size // shape[0]), dtype=np.float32)
    return _draw_uniform(ctx.rng, shape, -scale, scale)


@_fill_op("MSRAFill", dtype=np.float32, stateful=True, min_rank=2,
          rank_why="fan_out = size / shape[1]")
def msra_fill(ctx, *inputs):
    """N(0, s**2), s = sqrt(2 / fan_out) with Caffe2's fan_out = size // shape[1].

    Empty outputs come back empty; Caffe2 divided by zero.
    """
    shape = _fill_shape(ctx, inputs)
    _check_rank(ctx, shape, 2, "fan_out = size / shape[1]")
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return np.zeros(shape, np.float32)
    scale = np.sqrt(np.float32(2) / np.float32(size // shape[1]), dtype=np.float32)
    return (ctx.rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)
