"""Elementwise kernels (template: elementwise.pyx.j2).

Table-driven, like TorchInductor's CppOverrides or tinygrad's `code_for_op`: each op type maps
to a Cython expression per dtype kind, and a handful of macros wrap those expressions in loops.

* unary ops (`UNARY_FLOAT`/`UNARY_INT`/`UNARY_BOOL`): one flat loop `o0[i] = f(x)`;
* binary ops and Pow (`_ARITH`/`_COMPARE`): one strided loop nest over the output. The reference's own
  broadcasting helpers give B's shape as numpy sees it (legacy `broadcast=1, axis` included);
  `loop_nest` turns the operands' shapes into static strides (0 where an operand broadcasts),
  drops size-1 dims and merges dims that are contiguous for every operand, so equal shapes
  become one flat loop and a scalar B is loaded once, before the loop;
* Sum/Max/Min and WeightedSum: one flat loop over same-sized inputs; Cast: one flat loop;
* unary gradient ops (`UNARY_GRADIENT_FLOAT`): the `unary` loop over (y or x, dy);
* Add/Sub/Mul/DivGradient, SumReduceLike, Max/MinGradient (`reduce_nest`): one loop nest
  over C's shape; an output smaller than C (its operand was broadcast) is zeroed and summed
  into in C's element order, so the bias-like reductions need no scratch.

Integer arithmetic wraps around as numpy's does (computed in the unsigned type, so it does
not rely on -fwrapv); integer Div truncates toward zero and fails on a zero divisor.
"""
from __future__ import annotations

import math
import re

import numpy as np

from c2compile import dtypes
from c2compile.codegen.cython.lowering import CTYPES, KernelSpec, Unsupported, kernel, split_threads
from c2compile.errors import C2Error
from c2compile.ops.elementwise import (
    _UNARY_GRADIENTS, _binary_grad_operands, _cast_target, _legacy_axis, _legacy_view_shape,
    _operand_views)

UNSIGNED = {"int": "unsigned int", "long long": "unsigned long long", "short": "unsigned short",
            "signed char": "unsigned char"}


def literal(value, dtype) -> str:
    """`value` converted to `dtype` as a Cython expression of that C type (exact)."""
    dtype = np.dtype(dtype)
    ct = CTYPES[dtype]
    if dtype.kind == "b":
        return "1" if value else "0"
    if dtype.kind == "f":
        v = float(dtype.type(value))
        if math.isnan(v):
            return f"(<{ct}>NAN)"
        if math.isinf(v):
            return f"(<{ct}>{'' if v > 0 else '-'}INFINITY)"
        return f"(<{ct}>{v!r})"
    v = int(value)
    if v == np.iinfo(np.int64).min:
        return "(<long long>(-9223372036854775807 - 1))"
    return f"(<{ct}>{v})"


def as_float32(value) -> float:
    """A float argument as Caffe2 reads it (C++ float), like the reference's `_as`."""
    return float(np.float32(value))


def _uses(expr: str, name: str) -> bool:
    return re.search(rf"\b{name}\b", expr) is not None


def _format(template: str, T: str, **names) -> str:
    """Fill an expression template: {T} C type, {U} its unsigned twin, {f} libm suffix."""
    return template.format(T=T, U=UNSIGNED.get(T, T), f="f" if T == "float" else "", **names)


# ----------------------------------------------------------------------------- unary ops

# Cython expressions of `x`, the input element; `one`/`zero` are constants of x's type,
# argument values (alpha, lo, hi, scale) locals of x's type. {f} is "f" for float32 (expf)
# and "" for float64 (exp). NaN propagates wherever the reference (numpy) propagates it.
UNARY_FLOAT = {
    "Relu": "zero if x < zero else x",
    "Sigmoid": "one / (one + exp{f}(-x))",
    "Tanh": "tanh{f}(x)",
    "Exp": "exp{f}(x)",
    "Log": "log{f}(x)",
    "Sqrt": "sqrt{f}(x)",
    "Abs": "fabs{f}(x)",
    "Negative": "-x",
    "Sign": "one if x > zero else (-one if x < zero else (zero if x == zero else x))",
    "Sqr": "x * x",
    "Cube": "x * x * x",
    "Reciprocal": "one / x",
    "Rsqrt": "one / sqrt{f}(x)",
    "Cbrt": "cbrt{f}(x)",
    "Log1p": "log1p{f}(x)",
    "Sin": "sin{f}(x)",
    "Cos": "cos{f}(x)",
    "Tan": "tan{f}(x)",
    "Asin": "asin{f}(x)",
    "Acos": "acos{f}(x)",
    "Atan": "atan{f}(x)",
    "Sinh": "sinh{f}(x)",
    "Cosh": "cosh{f}(x)",
    "Floor": "floor{f}(x)",
    "Ceil": "ceil{f}(x)",
    "Softsign": "x / (one + fabs{f}(x))",
    "Softplus": "log{f}(exp{f}(x) + one)",  # as Caffe2 writes it: inf above ~88.7
    "LeakyRelu": "x if x >= zero else x * alpha",
    "Elu": "x if x > zero else alpha * expm1{f}(x)",
    # max(x, lo) first, then min(., hi), as the reference (so lo > hi gives hi)
    "Clip": "hi if (lo if x < lo else x) > hi else (lo if x < lo else x)",
    "Scale": "x * scale",
}
UNARY_INT = {
    "Negative": "<{T}>(<{U}>0 - <{U}>x)",
    "Sign": "<{T}>((x > 0) - (x < 0))",
    "Cube": "<{T}>(<{U}>x * <{U}>x * <{U}>x)",
}
UNARY_BOOL = {"Not": "x == 0"}
COPIES = ("Copy", "StopGradient", "CopyOnDeviceLike")
UNARY_TYPES = tuple(UNARY_FLOAT) + ("Not",) + COPIES


def _unary_consts(k: KernelSpec, dtype: np.dtype, op_type: str) -> dict:
    """Argument values of forward op `op_type` (a gradient op takes its forward's)."""
    a = k.args
    if op_type in ("LeakyRelu", "Elu"):
        return {"alpha": as_float32(a.alpha)}
    if op_type == "Clip":
        info = np.finfo(dtype)  # unset bounds are the type's lowest/max, as the reference
        return {"lo": float(info.min) if a.min is None else as_float32(a.min),
                "hi": float(info.max) if a.max is None else as_float32(a.max)}
    if k.op.type == "Scale":
        return {"scale": as_float32(a.scale)}
    return {}


@kernel(*UNARY_TYPES, template="elementwise.pyx.j2", macro="unary")
def unary(k: KernelSpec) -> None:
    """y = f(x) for one table entry; Copy/StopGradient are a memcpy."""
    x = k.ins[0]
    T = x.ctype
    k.vars["T"] = T
    k.vars["is_copy"] = k.op.type in COPIES
    if k.vars["is_copy"]:
        return
    table = {"f": UNARY_FLOAT, "i": UNARY_INT, "b": UNARY_BOOL}.get(x.dtype.kind, {})
    if k.op.type not in table:
        raise Unsupported(f"{k.op.type} on {x.dtype}")
    _pointwise(k, table[k.op.type], [("x", "i0")], k.op.type)
    k.vars["threads"] = split_threads(k.outs[0].size)


def _pointwise(k: KernelSpec, template: str, loads, op_type: str) -> None:
    """k.vars for the `unary` macro: o0[i] = template over the elements `loads` names
    ([(local, input buffer)]), with the constants and arguments the expression uses."""
    dtype = k.outs[0].dtype
    expr = _format(template, k.outs[0].ctype)
    consts = {"one": 1, "zero": 0, "three": 3, "mhalf": -0.5,
              **_unary_consts(k, dtype, op_type)}
    k.vars.update(expr=expr, loads=loads,
                  consts=[(n, literal(v, dtype)) for n, v in consts.items() if _uses(expr, n)])


# ----------------------------------------------------------------------------- unary gradients

# Cython expressions of the gradient ops' operands (y, x: the forward output/input; dy: the
# output's gradient), written as the reference (ops/elementwise.py) and Caffe2 write them, so
# NaN/inf in dy propagate alike: a select for Relu/Elu/Abs, a 0/1 mask product elsewhere.
UNARY_GRADIENT_FLOAT = {
    "ReluGradient": "dy if y > zero else zero",
    "SigmoidGradient": "dy * y * (one - y)",
    "TanhGradient": "dy * (one - y * y)",
    "SoftplusGradient": "dy * (one - exp{f}(-y))",
    "ReciprocalGradient": "dy * -(y * y)",
    "LeakyReluGradient": "dy * <{T}>(y >= zero) - dy * (<{T}>(y >= zero) - one) * alpha",
    "EluGradient": "dy * (y + alpha) if y < zero else dy",
    "ClipGradient": "dy * <{T}>((y > lo) & (y < hi))",
    "SoftsignGradient": "dy / ((one + fabs{f}(x)) * (one + fabs{f}(x)))",
    "AbsGradient": "zero if x == zero else (dy if x > zero else -dy)",
    "Log1pGradient": "dy / (x + one)",
    "SinGradient": "dy * cos{f}(x)",
    "CosGradient": "-dy * sin{f}(x)",
    "TanGradient": "dy / (cos{f}(x) * cos{f}(x))",
    "AsinGradient": "dy / sqrt{f}(one - x * x)",
    "AcosGradient": "-dy / sqrt{f}(one - x * x)",
    "AtanGradient": "dy / (one + x * x)",
    "CubeGradient": "dy * (x * x) * three",
    "SinhGradient": "dy * cosh{f}(x)",
    "CoshGradient": "dy * sinh{f}(x)",
    "RsqrtGradient": "dy * (y * y * y) * mhalf",
    "CbrtGradient": "dy / (three * (y * y))",
}
UNARY_GRADIENT_INT = {"CubeGradient": "<{T}>(<{U}>dy * (<{U}>x * <{U}>x) * <{U}>3)"}
# gradient op -> (its forward op, its inputs' names in order), from the ops' own table
_GRADIENT_OPERANDS = {t: (fwd, operands.lower().split())
                      for t, fwd, operands, *_ in _UNARY_GRADIENTS}


@kernel(*UNARY_GRADIENT_FLOAT, template="elementwise.pyx.j2", macro="unary")
def unary_gradient(k: KernelSpec) -> None:
    """dX = f(operands) elementwise, one flat loop (in-place safe: all read before o0[i])."""
    dtype = k.outs[0].dtype
    table = UNARY_GRADIENT_FLOAT if dtype.kind == "f" else UNARY_GRADIENT_INT
    if k.op.type not in table:
        raise Unsupported(f"{k.op.type} on {dtype}")
    forward, operands = _GRADIENT_OPERANDS[k.op.type]
    k.vars.update(T=k.outs[0].ctype, is_copy=False)
    _pointwise(k, table[k.op.type], [(name, f"i{j}") for j, name in enumerate(operands)],
               forward)
    k.vars["threads"] = split_threads(k.outs[0].size)


# ----------------------------------------------------------------------------- loop nests

def loop_nest(out_shape, in_shapes) -> list[tuple[int, list[int]]]:
    """Loops over `out_shape` reading operands of `in_shapes` broadcast numpy-style onto it.

    Returns [(extent, [output stride, stride of each input])], outermost loop first: element
    strides, 0 where an input broadcasts. Size-1 dims are dropped and neighbouring dims that
    are contiguous for every operand merged, so equal shapes give one loop.
    """
    nd = len(out_shape)
    table = []
    for shape in [out_shape, *in_shapes]:
        shape = (1,) * (nd - len(shape)) + tuple(shape)
        strides, acc = [0] * nd, 1
        for d in reversed(range(nd)):
            strides[d] = acc if shape[d] == out_shape[d] else 0
            acc *= shape[d]
        table.append(strides)
    loops: list[tuple[int, list[int]]] = []
    for d, extent in enumerate(out_shape):
        if extent == 1:
            continue
        st = [s[d] for s in table]
        if loops and all(p == q * extent for p, q in zip(loops[-1][1], st)):
            loops[-1] = (loops[-1][0] * extent, st)
        else:
            loops.append((extent, st))
    return loops


def _index(strides) -> str:
    """`n0 * 12 + n1`: the flat index of an operand in the loop nest (literal strides)."""
    terms = [f"n{level}" if s == 1 else f"n{level} * {s}"
             for level, s in enumerate(strides) if s]
    return " + ".join(terms) or "0"


def strided_body(k: KernelSpec, template: str, shapes, T: str) -> None:
    """Fill k.vars for the `strided` macro: `o0[...] = template(a, b, ...)` over the loop
    nest, `shapes` the inputs' shapes as broadcast onto the output."""
    out = k.outs[0]
    loops = loop_nest(out.shape, shapes)
    depth = len(loops)
    levels = [dict(var=f"n{i}", extent=e, loads=[]) for i, (e, _) in enumerate(loops)]
    before, operands, local = [], {}, []
    for j, name in enumerate("abcdefgh"[:len(shapes)]):
        strides = [st[j + 1] for _, st in loops]
        varying = [lv for lv, s in enumerate(strides) if s]
        last = varying[-1] if varying else -1
        index = _index(strides[:last + 1])
        if last == depth - 1 and depth:
            operands[name] = f"i{j}[{index}]"      # changes in the innermost loop: read inline
        else:
            # invariant in the inner loops: load it once, where it last changes
            load = (name, f"i{j}[{index}]")
            (levels[last]["loads"] if last >= 0 else before).append(load)
            operands[name] = name
            local.append(name)
    k.vars.update(
        T=T, levels=levels, before=before, locals=local,
        stmt=f"o0[{_index([st[0] for _, st in loops])}] = " + _format(template, T, **operands),
        size=out.size)
    k.vars.setdefault("consts", [])
    k.vars.setdefault("zero_check", None)


# ----------------------------------------------------------------------------- binary ops

_ARITH = {  # (float expression, integer expression)
    "Add": ("{a} + {b}", "<{T}>(<{U}>{a} + <{U}>{b})"),
    "Sub": ("{a} - {b}", "<{T}>(<{U}>{a} - <{U}>{b})"),
    "Mul": ("{a} * {b}", "<{T}>(<{U}>{a} * <{U}>{b})"),
    # C division truncates toward zero, as the reference; MIN / -1 wraps (x86 would trap)
    "Div": ("{a} / {b}", "(<{T}>(<{U}>0 - <{U}>{a}) if {b} == -1 else {a} / {b})"),
    "Pow": ("pow{f}({a}, {b})", None),
}
_COMPARE = {"EQ": "{a} == {b}", "NE": "{a} != {b}", "LT": "{a} < {b}", "LE": "{a} <= {b}",
            "GT": "{a} > {b}", "GE": "{a} >= {b}",
            "And": "({a} != 0) & ({b} != 0)", "Or": "({a} != 0) | ({b} != 0)",
            "Xor": "({a} != 0) ^ ({b} != 0)"}
BINARY_TYPES = tuple(_ARITH) + tuple(_COMPARE)


@kernel(*BINARY_TYPES, template="elementwise.pyx.j2", macro="strided")
def binary(k: KernelSpec) -> None:
    """C = A op B with numpy or legacy (broadcast=1, axis) broadcasting of B onto A."""
    A = k.ins[0]
    T = A.ctype
    if k.op.type == "Pow" and len(k.ins) == 1:
        k.vars["consts"] = [("e", literal(as_float32(k.args.exponent), A.dtype))]
        strided_body(k, "pow{f}({a}, e)", [A.shape], T)
        return
    B = k.ins[1]
    if k.args.broadcast:
        b_shape = _legacy_view_shape(k.op, A.shape, B.shape, _legacy_axis(k.op))
    else:
        b_shape = B.shape
    if k.op.type in _COMPARE:
        template = _COMPARE[k.op.type]
    else:
        floating, integer = _ARITH[k.op.type]
        template = floating if A.dtype.kind == "f" else integer
        if template is None:
            raise Unsupported(f"{k.op.type} on {A.dtype}")
    strided_body(k, template, [A.shape, b_shape], T)
    if k.op.type == "Div" and A.dtype.kind != "f":
        k.vars["zero_check"] = dict(size=B.size, code=k.error(1, "integer division by zero"))


# ----------------------------------------------------------------------------- broadcast gradients

def reduce_nest(k: KernelSpec, c_shape, views, reads, writes) -> None:
    """k.vars for the `reduce_nest` macro: one loop nest over C's shape `c_shape`, with
    operands that numpy-broadcast onto it as `views`. Each element loads `reads`
    ([(local, input buffer, operand)]; operand 0 is C's own index, operand j is views[j-1])
    and then stores `writes` ([(output index, operand, expression)]). An output smaller than
    C (its operand was broadcast) is zeroed first and summed into, in C's element order."""
    loops = loop_nest(c_shape, views)
    index = [_index([st[o] for _, st in loops]) for o in range(len(views) + 1)]
    c_size = int(np.prod(c_shape, dtype=np.int64))
    T = k.outs[0].ctype
    lines = [f"{name} = {buf}[{index[o]}]" for name, buf, o in reads]
    zero = []
    for j, o, expr in writes:
        out = f"o{j}[{index[o]}]"
        if k.outs[j].size == c_size:
            lines.append(f"{out} = {expr}")
        elif k.outs[j].dtype.kind == "f":
            zero.append((j, k.outs[j].size))
            lines.append(f"{out} = {out} + {expr}")
        else:  # integer sums wrap, as the reference's
            zero.append((j, k.outs[j].size))
            lines.append(_format("{o} = <{T}>(<{U}>{o} + <{U}>({e}))", T, o=out, e=expr))
    k.vars.update(T=T, locals=[name for name, _, _ in reads], zero=zero, stmt="\n".join(lines),
                  levels=[dict(var=f"n{i}", extent=e, loads=[]) for i, (e, _) in enumerate(loops)])


_GRADIENT_EXPRS = {  # (dA, dB) of dc, a, b, c for (floating point, integer) data
    "AddGradient": (("dc", "dc"), ("dc", "dc")),
    "SubGradient": (("dc", "-dc"), ("dc", "<{T}>(<{U}>0 - <{U}>dc)")),
    "MulGradient": (("dc * b", "dc * a"), ("<{T}>(<{U}>dc * <{U}>b)", "<{T}>(<{U}>dc * <{U}>a)")),
    "DivGradient": (("dc / b", "-dc * c / b"), None),  # as Caffe2 writes dB: -dC * C / B
}


@kernel(*_GRADIENT_EXPRS, template="elementwise.pyx.j2", macro="reduce_nest")
def binary_gradient(k: KernelSpec) -> None:
    """(dA, dB) of Add/Sub/Mul/Div, each summed over the dims its operand was broadcast
    along (numpy or legacy broadcast=1). In place (dA or dB over dC) is safe: that output
    has C's shape, and each element of dC is read before its own slot is written."""
    bufs = _binary_grad_operands(k.op, k.ins)   # dC, A, B, C: DivGradient may take 3
    A, B = bufs[1], bufs[2]
    c_shape, a_view, b_view = _operand_views(k.op, A.shape, B.shape)
    floating, integer = _GRADIENT_EXPRS[k.op.type]
    exprs = floating if A.dtype.kind == "f" else integer
    if exprs is None:
        raise Unsupported(f"{k.op.type} on {A.dtype} (C++ integer division)")
    exprs = [_format(e, A.ctype) for e in exprs]
    operands = {"dc": 0, "a": 1, "b": 2, "c": 0}  # name -> operand (0: C's own index)
    reads = [(name, buf.name, operands[name]) for name, buf in zip(operands, bufs)
             if any(_uses(e, name) for e in exprs)]
    reduce_nest(k, c_shape, [a_view, b_view], reads, [(0, 1, exprs[0]), (1, 2, exprs[1])])


@kernel("SumReduceLike", template="elementwise.pyx.j2", macro="reduce_nest")
def sum_reduce_like(k: KernelSpec) -> None:
    """A summed down to the shape of B placed in A's dims as broadcast=1 places it."""
    A, B = k.ins
    view = _legacy_view_shape(k.op, A.shape, B.shape, _legacy_axis(k.op))
    reduce_nest(k, A.shape, [view], [("a", "i0", 0)], [(0, 1, "a")])


@kernel("MaxGradient", "MinGradient", template="elementwise.pyx.j2", macro="reduce_nest")
def select_gradient(k: KernelSpec) -> None:
    """dX_j = [X_j == Y] * dY (a product, so dY = inf/NaN gives NaN where X_j lost)."""
    n = len(k.outs)
    reads = [("y", "i0", 0), ("dy", "i1", 0)] + [(f"x{j}", f"i{j + 2}", 0) for j in range(n)]
    writes = [(j, 0, f"<{k.outs[0].ctype}>(x{j} == y) * dy") for j in range(n)]
    reduce_nest(k, k.ins[0].shape, [], reads, writes)


# ----------------------------------------------------------------------------- variadic

@kernel("Sum", "Max", "Min", template="elementwise.pyx.j2", macro="variadic")
def variadic(k: KernelSpec) -> None:
    """y = x0 (+|max|min) x1 ... in input order, as the reference folds them."""
    T = k.ins[0].ctype
    steps = []
    for j in range(1, len(k.ins)):
        x = f"i{j}[i]"
        if k.op.type == "Sum":
            steps.append(f"y = y + {x}" if k.ins[0].dtype.kind == "f" else
                         _format("y = <{T}>(<{U}>y + <{U}>{x})", T, x=x))
        elif k.op.type == "Max":  # y kept unless y < x: a NaN in y wins, one in x does not
            steps.append(f"y = {x} if y < {x} else y")
        else:
            steps.append(f"y = {x} if {x} < y else y")
    k.vars.update(T=T, steps=steps)


@kernel("WeightedSum", template="elementwise.pyx.j2", macro="weighted_sum")
def weighted_sum(k: KernelSpec) -> None:
    """Y = w0 * X0 + w1 * X1 + ... (float32, each w one element, the X of equal size)."""
    if any(b.dtype != np.float32 for b in k.ins):
        raise Unsupported("WeightedSum takes float32")
    k.vars["pairs"] = len(k.ins) // 2
    k.vars["threads"] = split_threads(k.outs[0].size)


# ----------------------------------------------------------------------------- Cast

def _cast_supported(op) -> bool:
    try:
        return _cast_target(op) != np.object_
    except C2Error:
        return True  # the shape rule reports it


@kernel("Cast", template="elementwise.pyx.j2", macro="cast", supports=_cast_supported)
def cast(k: KernelSpec) -> None:
    """C++ static_cast, as the reference's numpy astype on this machine (Cast to STRING
    makes Python bytes objects: no kernel)."""
    src, dst = k.ins[0], k.outs[0]
    k.vars.update(is_copy=src.dtype == dst.dtype, T=dst.ctype,
                  what=f"{dtypes.name(dtypes.from_numpy(src.dtype))} -> "
                       f"{dtypes.name(dtypes.from_numpy(dst.dtype))}")
    if dst.dtype == np.bool_:
        expr = "x != 0"
    elif src.dtype.kind == "f" and dst.dtype.kind in "iu" and dst.dtype.itemsize < 4:
        expr = f"<{dst.ctype}><int>x"  # through a 32-bit int, keeping the low bits
    else:
        expr = f"<{dst.ctype}>x"
    k.vars["expr"] = expr
