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

Gradients are Caffe2 1.x's gradient makers: the same gradient ops (ReluGradient,
AddGradient, ...; MulGradient etc. sum over the dims an operand was broadcast along), or the
same forward ops where Caffe2 builds a gradient from them (Exp, Log, Sqrt, Sqr, Pow, Cast),
with the same names, inputs and arguments. Where Caffe2 silently computed a wrong gradient
(an in-place op whose gradient needs the input it overwrote), the rule raises instead.
"""
from __future__ import annotations

import numpy as np

from c2compile import dtypes
from c2compile.errors import ArgumentError
from c2compile.ops.gradient import NO_GRADIENT
from c2compile.ops.schema import (
    NUMERIC_TYPES, Arg, TensorType, get_op, op, require_dtype, set_gradient)

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

def _clip_bounds(x, a):
    """Clip's (lo, hi) in x's type: unset bounds are the type's lowest/max, not +-inf."""
    info = np.finfo(x.dtype)
    lo = info.min if a.min is None else _as(x, a.min)
    hi = info.max if a.max is None else _as(x, a.max)
    return lo, hi


def _clip(x, a):
    lo, hi = _clip_bounds(x, a)
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


# ----------------------------------------------------------------------------- unary gradients

# Caffe2 1.x's unary gradient ops, one line each: type, the forward op whose rule emits it,
# the gradient op's inputs in Caffe2's order (X: the forward input, Y: its output, dY: the
# output's gradient), dtypes, allowed in-place pairs (Caffe2's schemas), dX = f(*inputs, args).
# The rule copies the forward op's arguments (alpha, min, max) onto the gradient op, so each
# gradient op takes its forward op's arguments. The formulas are Caffe2's own, as written
# there, so NaN/inf in dY propagate the way they do in Caffe2 (a select for Relu/Elu/Abs, a
# product with a 0/1 mask for Clip/LeakyRelu).
_UNARY_GRADIENTS = [
    ("ReluGradient", "Relu", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: np.where(y > 0, dy, 0)),
    ("SigmoidGradient", "Sigmoid", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: dy * y * (1 - y)),
    ("TanhGradient", "Tanh", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: dy * (1 - y * y)),
    ("SoftplusGradient", "Softplus", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: dy * (1 - np.exp(-y))),
    ("ReciprocalGradient", "Reciprocal", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: dy * -(y * y)),
    # Caffe2 tests Y >= 0 (not X): with alpha < 0 the negative side is misjudged; kept.
    ("LeakyReluGradient", "LeakyRelu", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: _leaky_relu_grad(y, dy, _as(y, a.alpha))),
    # Y < 0 selects the exponential side, so Y = 0 (X = 0) gets dY and a NaN Y passes dY on.
    ("EluGradient", "Elu", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: np.where(y < 0, dy * (y + _as(y, a.alpha)), dy)),
    # strictly inside (min, max): an output at a bound gets no gradient
    ("ClipGradient", "Clip", "Y dY", F32, [(1, 0)],
     lambda y, dy, a: dy * _inside(y, *_clip_bounds(y, a))),
    ("SoftsignGradient", "Softsign", "X dY", F32, [(1, 0)],
     lambda x, dy, a: dy / np.square(1 + np.abs(x))),
    ("AbsGradient", "Abs", "X dY", F32, _NONE,
     lambda x, dy, a: np.where(x == 0, 0, np.where(x > 0, dy, -dy))),
    ("Log1pGradient", "Log1p", "X dY", F32, _NONE, lambda x, dy, a: dy / (x + 1)),
    ("SinGradient", "Sin", "X dY", F32, _NONE, lambda x, dy, a: dy * np.cos(x)),
    ("CosGradient", "Cos", "X dY", F32, _NONE, lambda x, dy, a: -dy * np.sin(x)),
    ("TanGradient", "Tan", "X dY", F32, _NONE, lambda x, dy, a: dy / np.square(np.cos(x))),
    ("AsinGradient", "Asin", "X dY", F32, _NONE,
     lambda x, dy, a: dy / np.sqrt(1 - x * x)),
    ("AcosGradient", "Acos", "X dY", F32, _NONE,
     lambda x, dy, a: -dy / np.sqrt(1 - x * x)),
    ("AtanGradient", "Atan", "X dY", F32, _NONE, lambda x, dy, a: dy / (1 + x * x)),
    ("CubeGradient", "Cube", "dY X", NUMERIC, _NONE, lambda dy, x, a: dy * (x * x) * 3),
    ("SinhGradient", "Sinh", "dY X", F32, _NONE, lambda dy, x, a: dy * np.cosh(x)),
    ("CoshGradient", "Cosh", "dY X", F32, _NONE, lambda dy, x, a: dy * np.sinh(x)),
    ("RsqrtGradient", "Rsqrt", "dY Y", F32, _SELF,
     lambda dy, y, a: dy * (y * y * y) * -0.5),
    ("CbrtGradient", "Cbrt", "dY Y", F32, _SELF, lambda dy, y, a: dy / (3 * (y * y))),
]


def _leaky_relu_grad(y, dy, alpha):
    """Caffe2's dY * [Y >= 0] - dY * ([Y >= 0] - 1) * alpha, as written (dY = inf gives NaN)."""
    ge = (y >= 0).astype(y.dtype)
    return dy * ge - dy * (ge - 1) * alpha


def _inside(y, lo, hi):
    """1 where lo < y < hi, else 0, in y's type (Caffe2 multiplies dY by it)."""
    return ((y > lo) & (y < hi)).astype(y.dtype)


def _unary_grad_infer(allowed, dy_index: int):
    """dX has dY's type; the forward X/Y beside it must have dY's shape and dtype."""
    def infer(ctx, *ins: TensorType):
        dy = ins[dy_index]
        dy_name = ctx.inputs[dy_index]
        require_dtype(ctx, dy, allowed, f"gradient input '{dy_name}'")
        for t, name in zip(ins, ctx.inputs):
            if t.shape is not None and dy.shape is not None and t.shape != dy.shape:
                ctx.fail(f"'{name}' has shape {list(t.shape)} but the gradient '{dy_name}' "
                         f"has {list(dy.shape)}", blob=name)
            if t.dtype is not None and dy.dtype is not None and t.dtype != dy.dtype:
                ctx.fail(f"'{name}' is {t.dtype} but the gradient '{dy_name}' is {dy.dtype}",
                         blob=name)
        return [dy]
    return infer


def _unary_grad_reference(fn, dy_index: int):
    def reference(ctx, *ins):
        _checked(ctx, *ins)
        with _quiet():
            return np.asarray(fn(*ins, ctx.args), dtype=ins[dy_index].dtype)
    return reference


def _reads_input(g, what: str) -> None:
    """A rule whose gradient op reads the forward input X fails when the op ran in place:
    X is gone (Caffe2 silently read Y instead and gave a wrong gradient)."""
    if g.I(0) in g.proto.output:
        g.fail(f"{g.type} ran in place on '{g.I(0)}', but its gradient needs {what}, which the "
               "op overwrote; write the output to another blob", blob=g.I(0))


def _unary_grad_rule(grad_type: str, operands: list[str]):
    def rule(g):
        if "X" in operands:
            _reads_input(g, "the input X")
        names = {"X": g.I, "Y": g.O, "dY": g.GO}
        return [g.op(grad_type, [names[o](0) for o in operands], [g.GI(0)])]
    return rule


for _type, _fwd, _operands, _allowed, _inplace, _fn in _UNARY_GRADIENTS:
    _operands = _operands.split()
    _dy = _operands.index("dY")
    _ref = _unary_grad_reference(_fn, _dy)
    _ref.__doc__ = (f"Caffe2 {_type}: the gradient of {_fwd}, from "
                    f"({', '.join(_operands)}).")
    op(_type, inputs=2, outputs=1, inplace=_inplace, args=get_op(_fwd).args,
       infer=_unary_grad_infer(_allowed, _dy))(_ref)
    set_gradient(_fwd, _unary_grad_rule(_type, _operands))


def _copy_grad(g):
    # CopyOnDeviceLike copies dY onto X's device: a plain copy on one device
    return [g.op("CopyOnDeviceLike", [g.GO(0), g.I(0)], [g.GI(0)])]


def _sqrt_grad(g):
    gi = g.GI(0)
    return [g.op("Scale", [g.GO(0)], [gi], scale=0.5), g.op("Div", [gi, g.O(0)], [gi])]


def _sqr_grad(g):
    # Caffe2 scales dY in place (the output's gradient blob itself becomes 2 dY)
    _reads_input(g, "the input X")
    go = g.GO(0)
    return [g.op("Scale", [go], [go], scale=2.0), g.op("Mul", [go, g.I(0)], [g.GI(0)])]


def _log_grad(g):
    _reads_input(g, "the input X")
    return [g.op("Div", [g.GO(0), g.I(0)], [g.GI(0)])]


# Unary gradients Caffe2 builds from other ops instead of a gradient op of their own.
_COMPOSITE_GRADIENTS = {
    "Exp": lambda g: [g.op("Mul", [g.O(0), g.GO(0)], [g.GI(0)])],
    "Log": _log_grad,
    "Sqrt": _sqrt_grad,
    "Sqr": _sqr_grad,
    "Negative": lambda g: [g.op("Negative", [g.GO(0)], [g.GI(0)])],
    "Scale": lambda g: [g.op("Scale", [g.GO(0)], [g.GI(0)])],  # with the forward's scale
    "Copy": _copy_grad,
}
for _type, _rule in _COMPOSITE_GRADIENTS.items():
    set_gradient(_type, _rule)

# Caffe2 registers SHOULD_NOT_DO_GRADIENT for Sign and Not (and the comparisons and logic
# ops), GRADIENT_NOT_IMPLEMENTED_YET for Floor and Ceil: all of them stay without a rule,
# so a gradient that reaches one is an error naming it, as in Caffe2.
set_gradient("StopGradient", NO_GRADIENT)


@op("CopyOnDeviceLike", inputs=2, outputs=1, infer=lambda ctx, x, like: [x])
def copy_on_device_like(ctx, X, like):
    """A copy of X placed on the device of `like` (one device here: a plain copy)."""
    _checked(ctx, X, like)
    return X.copy()

# ----------------------------------------------------------------------------- Cast

_CAST_FROM = (np.float32, np.int32, np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int64,
              np.float64)
_DTYPE_BY_NAME = {dtypes.name(n): n for n in range(32) if not dtypes.name(n).startswith("<")}


def _data_type(ctx, name: str, fail=None):
    """A DataType argument given as a number or (Caffe2 also takes this) a type name.
    `fail(message)` reports an unknown name (default: an ArgumentError naming the op)."""
    value = getattr(ctx.args, name)
    if isinstance(value, str):
        upper = value.upper()
        if upper not in _DTYPE_BY_NAME:
            message = f"argument '{name}': unknown data type '{value}'"
            if fail is None:
                ctx.fail(message, cls=ArgumentError)
            fail(message)
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


def _cast_grad(g):
    """Cast back: to=from_type, from_type=to (both as numbers), no other argument copied.
    Caffe2 needs `from_type` for this and fails without it."""
    if not g.has("from_type"):
        g.fail("Cast's gradient needs argument 'from_type' (the DataType of the input), "
               "as in Caffe2; set it on the forward Cast", blob=g.I(0))
    to, from_type = (_data_type(g, n, g.fail) for n in ("to", "from_type"))
    return [g.op("Cast", [g.GO(0)], [g.GI(0)], copy_args=False, to=from_type, from_type=to)]


set_gradient("Cast", _cast_grad)


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


# ----------------------------------------------------------------------------- binary gradients

def _operand_views(ctx, a: tuple, b: tuple) -> tuple[tuple, tuple, tuple]:
    """(C's shape, A's and B's shapes as numpy broadcasting sees them) for a binary op or
    its gradient op: with broadcast=1, C is A and B is its legacy view."""
    if ctx.args.broadcast:
        return a, a, _legacy_view_shape(ctx, a, b, _legacy_axis(ctx))
    return _numpy_shape(ctx, a, b), a, b


def _reduce_to(g: np.ndarray, view: tuple, shape: tuple) -> np.ndarray:
    """g (of C's shape) summed over the dims along which an operand seen as `view` was
    broadcast, in the operand's own `shape`; in g's dtype (integers wrap, as in Caffe2)."""
    lead = g.ndim - len(view)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(view)
                                      if d == 1 and g.shape[lead + i] != 1)
    if axes:
        g = g.sum(axis=axes, dtype=g.dtype, keepdims=True)
    return g.reshape(shape)


def _div_gradient(dc, a, b, c):
    # dB = -dC * C / B, as Caffe2 writes it (integers: C++ truncating division)
    return _div(dc, b), _div(-dc * c, b)


# type: (dA, dB) of C's shape from (dC, A, B, C) broadcast onto C, before the reduction
_BINARY_GRADIENTS = {
    "AddGradient": lambda dc, a, b, c: (dc, dc),
    "SubGradient": lambda dc, a, b, c: (dc, -dc),
    "MulGradient": lambda dc, a, b, c: (dc * b, dc * a),
    "DivGradient": _div_gradient,
}


def _binary_grad_operands(ctx, ins):
    """(dC, A, B, C or None) from a binary gradient op's inputs (types, arrays or names).
    DivGradient also takes Caffe2's older three inputs (B, C, dC): A then has C's shape."""
    if len(ins) == 3 and ctx.type == "DivGradient":
        return ins[2], ins[1], ins[0], ins[1]
    return (*ins[:3], ins[3] if len(ins) > 3 else None)


def _binary_grad_infer(ctx, *ins: TensorType):
    """dA and dB have A's and B's types; dC (and Div's C) must have the forward output's."""
    dc, a, b, c = _binary_grad_operands(ctx, ins)
    names = _binary_grad_operands(ctx, ctx.inputs)
    require_dtype(ctx, a, NUMERIC, f"input '{names[1]}'")
    for t, name in zip(ins, ctx.inputs):
        if t.dtype is not None and a.dtype is not None and t.dtype != a.dtype:
            ctx.fail(f"'{name}' is {t.dtype}, A '{names[1]}' is {a.dtype}", blob=name)
    if len(set(ctx.outputs)) < 2:
        ctx.fail(f"dA and dB are the same blob '{ctx.outputs[0]}'", blob=ctx.outputs[0],
                 cls=ArgumentError)
    if a.shape is not None and b.shape is not None:
        c_shape = _operand_views(ctx, a.shape, b.shape)[0]
        for t, name in ((dc, names[0]), (c, names[3])):
            if t is not None and t.shape is not None and t.shape != c_shape:
                ctx.fail(f"'{name}' has shape {list(t.shape)}, but A {list(a.shape)} and B "
                         f"{list(b.shape)} give C {list(c_shape)}", blob=name)
        for j, t in enumerate((a, b)):
            if ctx.outputs[j] == ctx.inputs[0] and t.shape != ins[0].shape:
                ctx.fail(f"in-place output '{ctx.outputs[j]}' would change shape from "
                         f"{list(ins[0].shape)} to {list(t.shape)}", blob=ctx.outputs[j])
    return [TensorType(a.shape, a.dtype), TensorType(b.shape, a.dtype)]


def _binary_grad_reference(fn):
    def reference(ctx, *ins):
        _checked(ctx, *ins)
        dC, A, B, C = _binary_grad_operands(ctx, ins)
        _, a_view, b_view = _operand_views(ctx, A.shape, B.shape)
        with _quiet():
            da, db = fn(dC, A, B.reshape(b_view), C)
            return (_reduce_to(np.broadcast_to(da, dC.shape), a_view, A.shape),
                    _reduce_to(np.broadcast_to(db, dC.shape), b_view, B.shape))
    return reference


def _binary_grad_rule(grad_type: str):
    # Caffe2 1.x emits a gradient op even for Add/Sub (it reduces over broadcast dims). On an
    # op that ran in place, A (or B) is read as it is after the op, as Caffe2 reads it: for
    # Mul that is C, not A, so the other operand's gradient is Caffe2's (wrong) one.
    def rule(g):
        ins = [g.GO(0), g.I(0), g.I(1)] + ([g.O(0)] if grad_type == "DivGradient" else [])
        return [g.op(grad_type, ins, [g.GI(0), g.GI(1)])]
    return rule


for _type, _fn in _BINARY_GRADIENTS.items():
    _fwd = _type[:-len("Gradient")]
    _ref = _binary_grad_reference(_fn)
    _ref.__doc__ = (f"Caffe2 {_type}: (dA, dB) of {_fwd}, each summed over the dims its "
                    "operand was broadcast along (numpy or legacy broadcast=1 form).")
    # dA may overwrite input 0 (Caffe2 also allows dB; its MulGradient then computes garbage
    # when B broadcasts, as it zeroes dA before reading dC: we compute the true gradient)
    op(_type, inputs=(3, 4) if _fwd == "Div" else 3, outputs=2, args=get_op(_fwd).args,
       inplace=[(0, 0)] if _fwd == "Div" else [(0, 0), (0, 1)],
       infer=_binary_grad_infer)(_ref)
    set_gradient(_fwd, _binary_grad_rule(_type))


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


def _pow_grad(g):
    """Caffe2 builds Pow's gradient from other ops and copies none of Pow's arguments:
    exponent e given: dX = (X ** (e - 1) * dY) * e;
    exponent tensor E: dX = X ** (E - 1) * dY * E, dE = log(X) * Y * dY summed like E."""
    if g.has("exponent"):
        e = np.float32(g.args.exponent)  # Caffe2 does this arithmetic in float
        if g.I(0) != g.O(0):
            power = e - np.float32(1)
        else:  # X was overwritten by Y = X ** e: Caffe2 uses Y ** ((e - 1) / e) instead
            if abs(e) <= 1e-12:
                g.fail("Pow ran in place with exponent 0: X cannot be recovered from Y for "
                       "its gradient", blob=g.I(0))
            power = (e - np.float32(1)) / e
        gi = g.GI(0)
        if gi == g.GO(0):
            # in place, X_grad is both dY and dX: Caffe2's first op overwrites dY before the
            # Mul reads it and silently gives a wrong gradient
            g.fail(f"Pow ran in place on '{g.I(0)}' and its output gradient is named "
                   f"'{gi}' like the input gradient, so Caffe2's gradient ops would overwrite "
                   "it before reading it; write Pow's output to another blob", blob=gi)
        return [g.op("Pow", [g.I(0)], [gi], copy_args=False, exponent=float(power)),
                g.op("Mul", [gi, g.GO(0)], [gi], copy_args=False),
                g.op("Scale", [gi], [gi], copy_args=False, scale=float(e))]
    if g.O(0) in (g.I(0), g.I(1)):
        g.fail("Pow with an exponent tensor cannot compute its gradient when it runs in place "
               "(Caffe2 refuses it too)", blob=g.O(0))
    # Caffe2 passes the broadcast arguments on whenever `broadcast` is set at all, even to 0
    legacy = {}
    if g.has("broadcast"):
        legacy = dict(broadcast=int(g.args.broadcast), axis=g.args.axis,
                      axis_str=g.args.axis_str, order=g.args.order)
    x, e, y, dy = g.I(0), g.I(1), g.O(0), g.GO(0)
    dx, de = g.GI(0), g.GI(1)
    pre = de + "_autogen_pre_red"

    def make(type_, ins, outs, **args):
        return g.op(type_, ins, outs, copy_args=False, **args)
    ops = [make("ConstantFill", [e], [de], value=1.0),
           make("Sub", [e, de], [de]),
           make("Pow", [x, de], [dx], **legacy),
           make("Mul", [dx, dy], [dx]),
           make("Mul", [dx, e], [dx], **legacy),
           make("Log", [x], [pre]),
           make("Mul", [pre, y], [pre])]
    if not legacy:
        return ops + [make("Mul", [pre, dy], [de])]
    reduce_args = {k: legacy[k] for k in ("axis", "axis_str", "order")}
    return ops + [make("Mul", [pre, dy], [pre]),
                  make("SumReduceLike", [pre, e], [de], **reduce_args)]


set_gradient("Pow", _pow_grad)


def _sum_reduce_like_infer(ctx, a: TensorType, like: TensorType):
    require_dtype(ctx, a, F32_F64, f"input '{ctx.inputs[0]}'")
    if a.shape is not None and like.shape is not None:
        _legacy_view_shape(ctx, a.shape, like.shape, _legacy_axis(ctx))
    return [TensorType(like.shape, a.dtype)]


# Caffe2's own tests pass broadcast=1, which SumReduceLike ignores: it always reduces so.
@op("SumReduceLike", inputs=2, outputs=1, infer=_sum_reduce_like_infer, args=_BROADCAST_ARGS)
def sum_reduce_like(ctx, A, B):
    """A summed down to B's shape, B placed in A's dims as the legacy broadcast=1 form does
    (B of one element: the sum of all of A). Only B's shape is read."""
    _checked(ctx, A, B)
    view = _legacy_view_shape(ctx, A.shape, B.shape, _legacy_axis(ctx))
    with _quiet():
        return _reduce_to(A, view, B.shape)


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


def _select_grad_infer(ctx, y: TensorType, dy: TensorType, *xs: TensorType):
    """dX_i has X_i's type; Y, dY and every X_i share one float32 shape (no broadcasting)."""
    if ctx.num_outputs > len(xs):
        ctx.fail(f"{ctx.num_outputs} gradients asked for {len(xs)} inputs X", cls=ArgumentError)
    _variadic_infer(F32)(ctx, y, dy, *xs)
    return list(xs[:ctx.num_outputs])


def _select_grad_reference(ctx, Y, dY, *Xs):
    """dX_i = [X_i == Y] * dY: every input equal to the result gets the whole gradient (ties
    included), and dY = inf/NaN gives NaN where X_i lost, as Caffe2's product does."""
    _checked(ctx, Y, dY, *Xs)
    with _quiet():
        return tuple((x == Y).astype(dY.dtype) * dY for x in Xs[:ctx.num_outputs])


def _select_grad_rule(grad_type: str):
    def rule(g):
        if g.O(0) in g.proto.input:
            # dX of the overwritten input would be written over dY, an in-place pair that
            # Caffe2's MaxGradient/MinGradient schema refuses when the op is created
            g.fail(f"{g.type} ran in place on '{g.O(0)}': its gradient needs the inputs as "
                   "they were; write the output to another blob", blob=g.O(0))
        return [g.op(grad_type, [g.O(0), g.GO(0), *g.proto.input],
                     [g.GI(i) for i in range(g.num_inputs)])]
    return rule


for _type in ("Max", "Min"):
    op(_type + "Gradient", inputs=(3, None), outputs=(1, None),
       infer=_select_grad_infer)(_select_grad_reference)
    set_gradient(_type, _select_grad_rule(_type + "Gradient"))
