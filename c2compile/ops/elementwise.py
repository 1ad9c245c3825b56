"""Elementwise ops: unary math and activations, Cast/Copy, binary arithmetic, comparison and
logic with Caffe2's two broadcasting modes, and the variadic Sum/Max/Min.

Semantics follow Caffe2 1.x (checked against the PyTorch 1.10.2 build of Caffe2):

* dtypes are Caffe2's: most unary math takes float32 only, the binary ops take
  int32/int64/float32/float64 with both inputs of one dtype, and the result keeps it
  (Div on integers truncates toward zero, as C++ does). Comparisons also take bool and
  give bool; And/Or/Xor/Not take bool only.
* float arguments (alpha, scale, min/max, exponent) are read as C++ `float` and then
  converted to the input's type, so they are rounded to float32 first even on float64
  data.
* binary ops broadcast numpy-style by default. `broadcast=1` selects the legacy form:
  B (of no more dims than A) must match a contiguous run of A's dims starting at `axis`
  (default: aligned to the end; `axis_str` + `order` name the axis as a letter of the
  order string instead); leading and trailing size-1 dims of B broadcast, inner ones must
  match; a B of one element is a scalar whatever its shape. The output has A's shape and
  only input 0 may be the output then. Without `broadcast`, `axis`/`axis_str` are ignored,
  as Caffe2 1.x does.
"""
from __future__ import annotations

import numpy as np

from c2compile import dtypes
from c2compile.errors import ArgumentError
from c2compile.ops.gradient import NO_GRADIENT
from c2compile.ops.schema import (
    NUMERIC_TYPES, Arg, TensorType, op, require_dtype, set_gradient)

F32 = (np.float32,)
F32_F64 = (np.float32, np.float64)
NUMERIC = NUMERIC_TYPES
COMPARABLE = NUMERIC_TYPES + (np.bool_,)
BOOL = (np.bool_,)


def _checked(ctx, *arrays) -> list[TensorType]:
    """Run the op's shape rule on the actual inputs: the reference validates as infer does."""
    for name, a in zip(ctx.inputs, arrays):
        if not isinstance(a, (np.ndarray, np.generic)):
            ctx.fail(f"input '{name}' holds a {type(a).__name__}, not a tensor", blob=name)
    return ctx.opdef.infer(ctx, *[TensorType(np.shape(a), a.dtype) for a in arrays])


def _as(x: np.ndarray, value: float):
    """A float argument as Caffe2 reads it (C++ float), in the input's type."""
    return x.dtype.type(np.float32(value))


def _quiet():
    """Caffe2 produces inf/nan silently (exp overflow, log of negatives, ...)."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")


# ----------------------------------------------------------------------------- unary ops

def _clip(x, a):
    info = np.finfo(x.dtype)  # unset bounds are the type's lowest/max, not +-inf
    lo = info.min if a.min is None else _as(x, a.min)
    hi = info.max if a.max is None else _as(x, a.max)
    return np.minimum(np.maximum(x, lo), hi)


_SELF = [(0, 0)]
_NONE: list = []
_ANY = None  # any dtype

# One line per op: type, input dtypes, allowed in-place pairs, arguments, y = f(x, args).
_UNARY = [
    ("Relu", F32, _SELF, (), lambda x, a: np.maximum(x, x.dtype.type(0))),
    ("Sigmoid", F32, _SELF, (), lambda x, a: 1 / (1 + np.exp(-x))),
    ("Tanh", F32, _SELF, (), lambda x, a: np.tanh(x)),
    ("Exp", F32, _SELF, (), lambda x, a: np.exp(x)),
    ("Log", F32, _SELF, (), lambda x, a: np.log(x)),
    ("Sqrt", F32_F64, _SELF, (), lambda x, a: np.sqrt(x)),
    ("Abs", F32, _NONE, (), lambda x, a: np.abs(x)),
    ("Negative", NUMERIC, _SELF, (), lambda x, a: np.negative(x)),
    ("Sign", NUMERIC, _NONE, (), lambda x, a: np.sign(x)),
    ("Sqr", F32, _SELF, (), lambda x, a: x * x),
    ("Cube", NUMERIC, _NONE, (), lambda x, a: x * x * x),
    ("Reciprocal", F32, _SELF, (), lambda x, a: 1 / x),
    ("Rsqrt", F32, _SELF, (), lambda x, a: 1 / np.sqrt(x)),
    ("Cbrt", F32, _SELF, (), lambda x, a: np.cbrt(x)),
    ("Log1p", F32, _NONE, (), lambda x, a: np.log1p(x)),
    ("Sin", F32, _NONE, (), lambda x, a: np.sin(x)),
    ("Cos", F32, _NONE, (), lambda x, a: np.cos(x)),
    ("Tan", F32, _NONE, (), lambda x, a: np.tan(x)),
    ("Asin", F32, _NONE, (), lambda x, a: np.arcsin(x)),
    ("Acos", F32, _NONE, (), lambda x, a: np.arccos(x)),
    ("Atan", F32, _NONE, (), lambda x, a: np.arctan(x)),
    ("Sinh", F32, _NONE, (), lambda x, a: np.sinh(x)),
    ("Cosh", F32, _NONE, (), lambda x, a: np.cosh(x)),
    ("Floor", F32, _SELF, (), lambda x, a: np.floor(x)),
    ("Ceil", F32, _SELF, (), lambda x, a: np.ceil(x)),
    ("Softsign", F32, _SELF, (), lambda x, a: x / (1 + np.abs(x))),
    # Caffe2 computes log(exp(x) + 1) as written: inf above ~88.7, 0 below ~-17 (float32).
    ("Softplus", F32, _SELF, (), lambda x, a: np.log(np.exp(x) + 1)),
    ("LeakyRelu", F32, _SELF, (Arg("alpha", "float", 0.01),),
     lambda x, a: np.where(x >= 0, x, x * _as(x, a.alpha))),
    ("Elu", F32, _SELF, (Arg("alpha", "float", 1.0),),
     lambda x, a: np.where(x > 0, x, _as(x, a.alpha) * np.expm1(x))),
    ("Clip", F32, _SELF, (Arg("min", "float", None), Arg("max", "float", None)), _clip),
    ("Scale", F32_F64, _SELF, (Arg("scale", "float", 1.0),), lambda x, a: x * _as(x, a.scale)),
    ("Copy", _ANY, _NONE, (), lambda x, a: x.copy()),
    ("StopGradient", _ANY, _SELF, (), lambda x, a: x.copy()),
    ("Not", BOOL, _NONE, (), lambda x, a: np.logical_not(x)),
]


def _unary_infer(allowed):
    def infer(ctx, x: TensorType):
        if allowed is not None:
            require_dtype(ctx, x, allowed, f"input '{ctx.inputs[0]}'")
        return [x]
    return infer


def _unary_reference(fn):
    def reference(ctx, x):
        _checked(ctx, x)
        with _quiet():
            y = np.asarray(fn(x, ctx.args), dtype=x.dtype)
        return y
    return reference


for _type, _allowed, _inplace, _args, _fn in _UNARY:
    _ref = _unary_reference(_fn)
    _ref.__doc__ = f"Caffe2 {_type}, elementwise."
    op(_type, inputs=1, outputs=1, inplace=_inplace, args=_args,
       infer=_unary_infer(_allowed))(_ref)

set_gradient("StopGradient", NO_GRADIENT)


# ----------------------------------------------------------------------------- unary gradients

def _same_as_dy(ctx, *ins: TensorType):
    """dX has dY's (the last input's) type; the forward input/output must match it."""
    dy = ins[-1]
    require_dtype(ctx, dy, F32, f"gradient input '{ctx.inputs[-1]}'")
    for t, name in zip(ins[:-1], ctx.inputs):
        if t.shape is not None and dy.shape is not None and t.shape != dy.shape:
            ctx.fail(f"'{name}' has shape {list(t.shape)} but the gradient "
                     f"'{ctx.inputs[-1]}' has {list(dy.shape)}", blob=name)
    return [dy]


@op("ReluGradient", inputs=2, outputs=1, inplace=[(1, 0)], infer=_same_as_dy)
def relu_gradient(ctx, Y, dY):
    """dX = dY where Y > 0, else 0 (inputs: the forward output Y, its gradient dY)."""
    _checked(ctx, Y, dY)
    return np.where(Y > 0, dY, dY.dtype.type(0))


set_gradient("Relu", lambda g: [g.op("ReluGradient", [g.O(0), g.GO(0)], [g.GI(0)])])


# ----------------------------------------------------------------------------- Cast

_CAST_FROM = (np.float32, np.int32, np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int64,
              np.float64)
_DTYPE_BY_NAME = {dtypes.name(n): n for n in range(32) if not dtypes.name(n).startswith("<")}


def _data_type(ctx, name: str):
    """A DataType argument given as a number or (Caffe2 also takes this) a type name."""
    value = ctx.arg(name)
    if isinstance(value, str):
        upper = value.upper()
        if upper not in _DTYPE_BY_NAME:
            ctx.fail(f"argument '{name}': unknown data type '{value}'", cls=ArgumentError)
        return _DTYPE_BY_NAME[upper]
    return int(value)


def _cast_target(ctx) -> np.dtype:
    to = _data_type(ctx, "to")
    if ctx.has("from_type"):
        _data_type(ctx, "from_type")  # validated as Caffe2 parses it; it changes nothing
    if to == dtypes.UNDEFINED:
        ctx.fail("argument 'to' must be a DataType, got UNDEFINED", cls=ArgumentError)
    if to == dtypes.BYTE:
        ctx.fail("Cast to BYTE is deprecated in Caffe2 (use UINT8)", cls=ArgumentError)
    if to == dtypes.FLOAT16:
        ctx.fail("Caffe2 cannot cast to FLOAT16 on CPU", cls=ArgumentError)
    try:
        return dtypes.to_numpy(to)
    except ValueError:
        ctx.fail(f"argument 'to': unknown DataType {to}", cls=ArgumentError)


def _cast_infer(ctx, x: TensorType):
    target = _cast_target(ctx)
    require_dtype(ctx, x, _CAST_FROM, f"input '{ctx.inputs[0]}'")
    return [TensorType(x.shape, target)]


def _to_string(v) -> bytes:
    """std::to_string: %f for floating point, %d for integers and bools."""
    if isinstance(v, (float, np.floating)):
        return b"%f" % float(v)
    return b"%d" % int(v)


@op("Cast", inputs=1, outputs=1,
    args=[Arg("to", "int_or_str", dtypes.FLOAT), Arg("from_type", "int_or_str", None)], infer=_cast_infer)
def cast(ctx, x):
    """Convert to DataType `to` like C++ static_cast (floats truncate toward zero)."""
    target = _checked(ctx, x)[0].dtype
    if target == np.object_:
        out = np.empty(x.shape, dtype=object)
        out.ravel()[:] = [_to_string(v) for v in x.ravel()]
        return out
    with _quiet():
        if x.dtype.kind == "f" and target.kind in "iu" and target.itemsize < 4:
            # C++ converts through a 32-bit int and keeps the low bits
            return x.astype(np.int32).astype(target)
        return x.astype(target)


# ----------------------------------------------------------------------------- broadcasting

_BROADCAST_ARGS = (
    Arg("broadcast", "bool", False, "1 selects the legacy broadcast of B onto A"),
    Arg("axis", "int", -1, "legacy broadcast: the dim of A where B's dims start"),
    Arg("axis_str", "str", "", "legacy broadcast: the axis as a letter of `order`"),
    Arg("order", "str", "NCHW", "storage order that `axis_str` is looked up in"),
)


def _legacy_axis(ctx) -> int:
    """The `axis` of a broadcast=1 op, resolved from `axis` or `axis_str` + `order`."""
    axis, axis_str = ctx.args.axis, ctx.args.axis_str
    if axis != -1:
        if axis_str:
            ctx.fail("arguments 'axis' and 'axis_str' cannot be used together",
                     cls=ArgumentError)
        return axis
    if axis_str:
        if len(axis_str) != 1:
            ctx.fail(f"axis_str '{axis_str}' must be one letter", cls=ArgumentError)
        pos = ctx.args.order.find(axis_str)
        if pos < 0:
            ctx.fail(f"axis_str '{axis_str}' is not a letter of order '{ctx.args.order}'",
                     cls=ArgumentError)
        return pos
    return -1


def _legacy_view_shape(ctx, a: tuple, b: tuple, axis: int) -> tuple:
    """B's shape with size-1 dims added so that numpy broadcasting does what Caffe2's
    legacy broadcast does; fails on shapes Caffe2 rejects."""
    size = int(np.prod(b, dtype=np.int64))
    if size == 1:
        return ()
    names = f"A {list(a)} and B {list(b)}"
    if len(b) > len(a):
        ctx.fail(f"broadcast=1 needs B to have no more dims than A: {names}")
    if axis == -1:
        axis = len(a) - len(b)
    if not 0 <= axis <= len(a) - len(b):
        ctx.fail(f"broadcast axis={axis} is out of range [0, {len(a) - len(b)}] for {names}",
                 cls=ArgumentError)
    lo, hi = 0, len(b) - 1
    while lo < len(b) and b[lo] == 1:
        lo += 1
    while hi >= lo and b[hi] == 1:
        hi -= 1
    for i in range(lo, hi + 1):
        if a[axis + i] != b[i]:
            ctx.fail(f"broadcast=1, axis={axis}: dim {i} of B ({b[i]}) does not match dim "
                     f"{axis + i} of A ({a[axis + i]}); {names}")
    return (1,) * axis + tuple(b) + (1,) * (len(a) - axis - len(b))


def _numpy_shape(ctx, a: tuple, b: tuple) -> tuple:
    ndim = max(len(a), len(b))
    a1, b1 = (1,) * (ndim - len(a)) + a, (1,) * (ndim - len(b)) + b
    out = []
    for i, (da, db) in enumerate(zip(a1, b1)):
        if da != db and da != 1 and db != 1:
            ctx.fail(f"shapes A {list(a)} and B {list(b)} do not broadcast (dim {i - ndim}: "
                     f"{da} vs {db}); pass broadcast=1 for Caffe2's legacy broadcast")
        out.append(0 if 0 in (da, db) else max(da, db))
    return tuple(out)


def _binary_shape(ctx, a: TensorType, b: TensorType, allowed) -> tuple | None:
    """Checks dtypes, broadcasting and in-place use of a binary op; returns C's shape."""
    require_dtype(ctx, a, allowed, f"input '{ctx.inputs[0]}'")
    if a.dtype is not None and b.dtype is not None and a.dtype != b.dtype:
        ctx.fail(f"inputs '{ctx.inputs[0]}' ({a.dtype}) and '{ctx.inputs[1]}' ({b.dtype}) "
                 "must have the same dtype", blob=ctx.inputs[1])
    out = ctx.outputs[0]
    if ctx.args.broadcast:
        axis = _legacy_axis(ctx)
        if ctx.inputs[1] == out:
            ctx.fail("with broadcast=1 only input 0 can be computed in place", blob=out,
                     cls=ArgumentError)
        if a.shape is not None and b.shape is not None:
            _legacy_view_shape(ctx, a.shape, b.shape, axis)
        return a.shape
    if a.shape is None or b.shape is None:
        return None
    shape = _numpy_shape(ctx, a.shape, b.shape)
    for i, t in enumerate((a, b)):
        if ctx.inputs[i] == out and shape != t.shape:
            ctx.fail(f"in-place output '{out}' would change shape from {list(t.shape)} to "
                     f"{list(shape)}", blob=out)
    return shape


def _b_view(ctx, A, B):
    """B reshaped so that plain numpy broadcasting against A gives Caffe2's result."""
    if ctx.args.broadcast:
        return B.reshape(_legacy_view_shape(ctx, A.shape, B.shape, _legacy_axis(ctx)))
    return B


# ----------------------------------------------------------------------------- binary ops

def _div(a, b):
    if a.dtype.kind == "f":
        return a / b
    if np.any(b == 0):
        raise ZeroDivisionError("integer division by zero")
    # C++ integer division truncates toward zero; a - fmod(a, b) is an exact multiple of b
    return (a - np.fmod(a, b)) // b


_ARITH_ARGS = _BROADCAST_ARGS + (
    Arg("allow_broadcast_fastpath", "bool", False, "a speed hint; results are unchanged"),)
_AB = [(0, 0), (1, 0)]

# type, input dtypes, in-place pairs, extra arguments, C = f(A, B), C's dtype (None: A's)
_BINARY = [
    ("Add", NUMERIC, _AB, _ARITH_ARGS, np.add, None),
    ("Sub", NUMERIC, _AB, _ARITH_ARGS, np.subtract, None),
    ("Mul", NUMERIC, _AB, _ARITH_ARGS, np.multiply, None),
    ("Div", NUMERIC, _SELF, _ARITH_ARGS, _div, None),
    ("EQ", COMPARABLE, _NONE, _BROADCAST_ARGS, np.equal, np.bool_),
    ("NE", COMPARABLE, _NONE, _BROADCAST_ARGS, np.not_equal, np.bool_),
    ("LT", COMPARABLE, _NONE, _BROADCAST_ARGS, np.less, np.bool_),
    ("LE", COMPARABLE, _NONE, _BROADCAST_ARGS, np.less_equal, np.bool_),
    ("GT", COMPARABLE, _NONE, _BROADCAST_ARGS, np.greater, np.bool_),
    ("GE", COMPARABLE, _NONE, _BROADCAST_ARGS, np.greater_equal, np.bool_),
    ("And", BOOL, _SELF, _BROADCAST_ARGS, np.logical_and, np.bool_),
    ("Or", BOOL, _SELF, _BROADCAST_ARGS, np.logical_or, np.bool_),
    ("Xor", BOOL, _SELF, _BROADCAST_ARGS, np.logical_xor, np.bool_),
]


def _binary_infer(allowed, out_dtype):
    def infer(ctx, a: TensorType, b: TensorType):
        shape = _binary_shape(ctx, a, b, allowed)
        return [TensorType(shape, a.dtype if out_dtype is None else out_dtype)]
    return infer


def _binary_reference(fn):
    def reference(ctx, A, B):
        t = _checked(ctx, A, B)[0]
        with _quiet():
            C = fn(A, _b_view(ctx, A, B))
        return np.asarray(C, dtype=t.dtype)
    return reference


for _type, _allowed, _inplace, _args, _fn, _out in _BINARY:
    _ref = _binary_reference(_fn)
    _ref.__doc__ = f"Caffe2 {_type}: numpy broadcasting, or the legacy form with broadcast=1."
    op(_type, inputs=2, outputs=1, inplace=_inplace, args=_args,
       infer=_binary_infer(_allowed, _out))(_ref)


# ----------------------------------------------------------------------------- Pow

def _pow_infer(ctx, x: TensorType, *e: TensorType):
    require_dtype(ctx, x, F32, f"input '{ctx.inputs[0]}'")
    if not e:
        if not ctx.has("exponent"):
            ctx.fail("Pow with one input needs the 'exponent' argument", cls=ArgumentError)
        return [x]
    if ctx.has("exponent"):
        ctx.fail("give the exponent either as argument 'exponent' or as input 1, not both",
                 cls=ArgumentError)
    (b,) = e
    if not ctx.args.broadcast:
        if ctx.args.axis != -1 or ctx.args.axis_str:
            ctx.fail("'axis'/'axis_str' need broadcast=1", cls=ArgumentError)
        if x.dtype is not None and b.dtype is not None and x.dtype != b.dtype:
            ctx.fail(f"exponent '{ctx.inputs[1]}' is {b.dtype}, X is {x.dtype}",
                     blob=ctx.inputs[1])
        if x.shape is not None and b.shape is not None and x.shape != b.shape:
            ctx.fail(f"X {list(x.shape)} and exponent {list(b.shape)} differ in shape "
                     "(Pow does not broadcast unless broadcast=1)", blob=ctx.inputs[1])
        return [x]
    return [TensorType(_binary_shape(ctx, x, b, F32), x.dtype)]


@op("Pow", inputs=(1, 2), outputs=1, inplace=_AB, infer=_pow_infer,
    args=[Arg("exponent", "float", None)] + list(_BROADCAST_ARGS))
def pow_(ctx, X, *E):
    """X ** exponent, the exponent an argument or a tensor (legacy broadcast with broadcast=1)."""
    _checked(ctx, X, *E)
    with _quiet():
        if not E:
            return np.power(X, _as(X, ctx.args.exponent))
        return np.power(X, _b_view(ctx, X, E[0])).astype(X.dtype)


# ----------------------------------------------------------------------------- variadic

def _variadic_infer(allowed):
    def infer(ctx, *ins: TensorType):
        first = ins[0]
        require_dtype(ctx, first, allowed, f"input '{ctx.inputs[0]}'")
        for i, t in enumerate(ins[1:], 1):
            if first.dtype is not None and t.dtype is not None and t.dtype != first.dtype:
                ctx.fail(f"input {i} '{ctx.inputs[i]}' is {t.dtype}, input 0 is {first.dtype}",
                         blob=ctx.inputs[i])
            if first.shape is not None and t.shape is not None and t.shape != first.shape:
                ctx.fail(f"input {i} '{ctx.inputs[i]}' has shape {list(t.shape)}, input 0 "
                         f"has {list(first.shape)}; {ctx.type} does not broadcast",
                         blob=ctx.inputs[i])
        return [first]
    return infer


def _sum_grad(g):
    """Every input's gradient is the output's gradient itself: no op is needed."""
    for i in range(g.num_inputs):
        g.pass_GI(i, g.GO(0))
    return []


@op("Sum", inputs=(1, None), outputs=1, inplace=_SELF, infer=_variadic_infer(NUMERIC),
    grad=_sum_grad)
def sum_(ctx, *xs):
    """Elementwise sum of same-shaped inputs, added in input order."""
    _checked(ctx, *xs)
    y = xs[0].copy()
    with _quiet():
        for x in xs[1:]:
            y += x
    return y


@op("Max", inputs=(1, None), outputs=1, inplace=_SELF, infer=_variadic_infer(F32))
def max_(ctx, *xs):
    """Elementwise max of same-shaped inputs; a NaN in the running max wins, one in a later
    input does not (Caffe2 keeps y unless y < x)."""
    _checked(ctx, *xs)
    y = xs[0].copy()
    for x in xs[1:]:
        y = np.where(y < x, x, y)
    return y


@op("Min", inputs=(1, None), outputs=1, inplace=_SELF, infer=_variadic_infer(F32))
def min_(ctx, *xs):
    """Elementwise min of same-shaped inputs; NaN handling mirrors Max (y kept unless x < y)."""
    _checked(ctx, *xs)
    y = xs[0].copy()
    for x in xs[1:]:
        y = np.where(x < y, x, y)
    return y
