"""Row-wise and axis reductions, losses, Softmax and the reductions' and losses' gradients
(template: reduction.pyx.j2).

Geometry and validation come from the op definitions (`c2compile.ops.reduction`, Softmax's
from `c2compile.ops.normalization`); the planner has already run each op's shape rule, so a
prepare function only turns shapes into loop bounds. Float32 sums accumulate in double (as
the references do, or closer to exact than their float32 sums), so long rows do not drift.
Data-dependent failures (a label out of range, soft labels that are not probabilities) are
error codes, checked before anything is written. The gradient kernels compute in float32 with
Caffe2's order of operations, as their references do.
"""
from __future__ import annotations

import math
import re

import numpy as np

from c2compile.codegen.cython.lowering import KernelSpec, Unsupported, kernel
from c2compile.ops.normalization import _softmax_check
from c2compile.ops.reduction import (LOG_THRESHOLD, REDUCE_EPS, _arg_axis, _batch_dims,
                                     _highest, _lowest, _reduce_axes, _swl_dims)
from c2compile.ops.schema import TensorType

TEMPLATE = "reduction.pyx.j2"
# A contiguous run reduced into one value goes through this many independent partial
# accumulators, so that gcc vectorises it (it may not reorder one float accumulator itself).
LANES = 8
LOG_MIN = repr(math.log(LOG_THRESHOLD))  # log(1e-20): where clipped log-probabilities stop


def _c(value, dtype) -> str:
    """A C literal of `value` as `dtype` (exact: floats by repr, the int minima spelled out)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        v = float(dtype.type(value))
        return "INFINITY" if v == math.inf else "-INFINITY" if v == -math.inf else repr(v)
    v = int(value)
    if v == np.iinfo(np.int64).min:
        return "(-9223372036854775807 - 1)"
    if v == np.iinfo(np.int32).min:
        return "(-2147483647 - 1)"
    return str(v)


def _require(k: KernelSpec, what: str, buf, dtypes) -> None:
    if np.dtype(buf.dtype) not in [np.dtype(d) for d in dtypes]:
        raise Unsupported(f"{k.op.type}: {what} of dtype {buf.dtype} has no kernel")


F32, F64, I32, I64 = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
NUMERIC = (I32, I64, F32, F64)


# ----------------------------------------------------------------------------- Softmax

def _lanes(n: int) -> int:
    """Partial accumulators for a contiguous run of n (0: too short to be worth it)."""
    return LANES if n >= 2 * LANES else 0


@kernel("Softmax", template=TEMPLATE)
def softmax(k: KernelSpec) -> None:
    """Rows of X flattened to N x D at `axis`."""
    x = k.ins[0]
    _require(k, "X", x, [F32])
    axis = _softmax_check(k.op, TensorType(x.shape, x.dtype))
    n, d = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
    k.vars.update(N=n, D=d, lanes=_lanes(d))


# ----------------------------------------------------------------------------- Reduce*

_UNSIGNED = {I32: "unsigned int", I64: "unsigned long long"}


def _reduce_rule(op_type: str, dtype: np.dtype, count: int) -> dict:
    """How one Reduce* op accumulates, as C expression formats.

    acc: accumulator ctype ('' = the output's own, so Y itself accumulates); init: its start;
    step: expressions assigned in turn to the accumulator `{t}` for an element `{v}`; merge:
    the same for folding one partial accumulator `{v}` into another; finish: the output from
    an accumulator `{a}` ('' = none); empty: the value of every output of an empty input.
    """
    f = dtype.kind == "f"
    ct = {F32: "float", F64: "double", I32: "int", I64: "long long"}[dtype]
    add = ["{t} + {v}"]
    if op_type == "ReduceSum":
        if not f:   # wraps on overflow, as numpy's int sum (unsigned: no C overflow)
            u = _UNSIGNED[dtype]
            add = [f"<{ct}>(<{u}>{{t}} + <{u}>{{v}})"]
            return dict(acc="", init="0", step=add, merge=add, finish="", empty="0")
        return dict(acc="double" if dtype == F32 else "", init="0", step=add, merge=add,
                    finish=f"<{ct}>{{a}}" if dtype == F32 else "", empty="0")
    if op_type == "ReduceMean":
        return dict(acc="double", init="0", step=add, merge=add,
                    finish=f"<float>({{a}} / {count})", empty="0")
    if op_type == "ReduceL1":
        return dict(acc="double", init="0", step=["{t} + fabs(<double>{v})"], merge=add,
                    finish="<float>{a}", empty="0")
    if op_type == "ReduceL2":
        return dict(acc="double", init="0", step=["{t} + <double>{v} * <double>{v}"],
                    merge=add, finish="<float>sqrt({a})", empty="0")
    # Max/Min: a NaN wins (numpy's max/min propagate it), as a second select so both stay
    # branch-free; floats start from -inf/+inf so an all-(-inf) slice still gives -inf.
    cmp = ">" if op_type == "ReduceMax" else "<"
    step = [f"{{v}} if {{v}} {cmp} {{t}} else {{t}}"]
    extra = {}
    if f:
        init = "-INFINITY" if op_type == "ReduceMax" else "INFINITY"
        # Lanes keep the one select (which gcc vectorises) and check for NaNs apart.
        extra = dict(lane_step=list(step), nan_check=True)
        step.append("{v} if {v} != {v} else {t}")
    else:
        init = _c(_lowest(dtype) if op_type == "ReduceMax" else _highest(dtype), dtype)
    empty = _lowest(dtype) if op_type == "ReduceMax" else _highest(dtype)
    return dict(acc="", init=init, step=step, merge=step, finish="", empty=_c(empty, dtype),
                **extra)


def _collapse(shape, reduced) -> list[dict]:
    """Loop dims over X in memory order: size-1 dims dropped, neighbours of the same kind
    (both reduced or both kept) merged. Each: size, reduced, X stride, Y stride."""
    dims: list[list] = []
    for d, r in zip(shape, reduced):
        if d == 1:
            continue
        if dims and dims[-1][1] == r:
            dims[-1][0] *= d
        else:
            dims.append([d, r])
    if not dims:
        dims = [[1, True]]   # one element (or a 0-d X): still one pass through the body
    out, xs, ys = [], 1, 1
    for d, r in reversed(dims):
        out.append(dict(size=d, reduced=r, xs=xs, ys=0 if r else ys))
        xs *= d
        ys *= 1 if r else d
    out.reverse()
    for i, d in enumerate(out):
        d["i"] = i
    return out


def _offset(terms) -> str:
    """C expression sum of j<i> * stride over (i, stride) terms."""
    return " + ".join(f"j{i}" if s == 1 else f"j{i} * {s}" for i, s in terms) or "0"


@kernel("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2",
        template=TEMPLATE, macro="Reduce")
def reduce(k: KernelSpec) -> None:
    x = k.ins[0]
    allowed = NUMERIC if k.op.type in ("ReduceSum", "ReduceMax", "ReduceMin") else (F32,)
    _require(k, "X", x, allowed)
    axes = _reduce_axes(k.op, x.ndim)
    count = math.prod(x.shape[a] for a in axes)
    rule = dict(lane_step=None, nan_check=False) | _reduce_rule(k.op.type, np.dtype(x.dtype), count)
    acc = "o0"
    if rule["acc"]:
        acc = k.scratch_buf(k.outs[0].size, np.float64).name
    dims = _collapse(x.shape, [i in axes for i in range(x.ndim)])
    outer = dims[:-1]   # loops around the innermost (contiguous) run
    k.vars.update(rule, axes=list(axes), count=count, acc_name=acc, acc_t=rule["acc"] or x.ctype,
                  dims=dims, lanes=_lanes(dims[-1]["size"]) if dims[-1]["reduced"] else 0,
                  xi=_offset((d["i"], d["xs"]) for d in outer),
                  yi=_offset((d["i"], d["ys"]) for d in outer if not d["reduced"]))


# dX of each Reduce*Gradient as a C expression of dy, x (X's element) and y (Y's element), in
# X's dtype: the float32 arithmetic of Caffe2's reducers' Backward (and the references').
_REDUCE_GRAD_EXPR = {
    "ReduceSumGradient": "dy",
    "ReduceMeanGradient": "dy * alpha",
    "ReduceMaxGradient": "dy if x == y else 0",
    "ReduceMinGradient": "dy if x == y else 0",
    "ReduceL1Gradient": "-dy if x < -eps else (dy if x > eps else 0)",
    "ReduceL2Gradient": "dy if y < eps else dy * x / y",
}


@kernel(*_REDUCE_GRAD_EXPR, template=TEMPLATE, macro="ReduceGradient")
def reduce_gradient(k: KernelSpec) -> None:
    """dX[i] = f(dY[j], X[i], Y[j]) with j the reduced index of i: X walked in memory order."""
    x = k.ins[1]
    typed = k.op.type in ("ReduceSumGradient", "ReduceMaxGradient", "ReduceMinGradient")
    _require(k, "X", x, NUMERIC if typed else (F32,))
    axes = _reduce_axes(k.op, x.ndim)
    expr = _REDUCE_GRAD_EXPR[k.op.type]
    dims = _collapse(x.shape, [i in axes for i in range(x.ndim)])
    outer = dims[:-1]
    ysize = math.prod(1 if i in axes else d for i, d in enumerate(x.shape))
    uses = {name for name in ("x", "y", "eps", "alpha") if re.search(rf"\b{name}\b", expr)}
    k.vars.update(expr=expr, axes=list(axes), dims=dims, uses=uses, eps=_c(REDUCE_EPS, F32),
                  # Caffe2's float32 |Y| / |X| (X is not empty here: its kernel writes nothing)
                  alpha=_c(np.float32(ysize) / np.float32(max(x.size, 1)), F32),
                  xi=_offset((d["i"], d["xs"]) for d in outer),
                  yi=_offset((d["i"], d["ys"]) for d in outer if not d["reduced"]))


# ----------------------------------------------------------------------------- whole-tensor sums

@kernel("SumElements", "SumSqrElements", "AveragedLoss", "SumElementsInt", template=TEMPLATE,
        macro="SumElements")
def sum_elements(k: KernelSpec) -> None:
    """One sum over every element (double for float32, wrapping int32 for SumElementsInt)."""
    x = k.ins[0]
    _require(k, "X", x, [I32] if k.op.type == "SumElementsInt" else [F32])
    average = k.op.type == "AveragedLoss" or (k.op.type != "SumElementsInt" and k.args.average)
    k.vars.update(square=k.op.type == "SumSqrElements", average=average,
                  integer=k.op.type == "SumElementsInt")


@kernel("SumElementsGradient", "AveragedLossGradient", template=TEMPLATE,
        macro="SumElementsGradient")
def sum_elements_gradient(k: KernelSpec) -> None:
    """Every element of dX is dY (times 1/N when averaging), computed in double."""
    n = k.ins[0].size
    average = k.op.type == "AveragedLossGradient" or k.args.average
    k.vars.update(scale=repr(1.0 / n) if average and n else "1.0")


# ----------------------------------------------------------------------------- distances, losses

@kernel("SquaredL2Distance", template=TEMPLATE)
def squared_l2_distance(k: KernelSpec) -> None:
    """Z[i] = 0.5 * sum((X[i] - Y[i])^2), rows of X and Y flattened after the first axis."""
    _require(k, "X", k.ins[0], [F32])
    _require(k, "Y", k.ins[1], [F32])
    n = k.outs[0].shape[0]
    k.vars.update(N=n, D=k.ins[0].size // n if n else 0)


@kernel("SquaredL2DistanceGradient", template=TEMPLATE)
def squared_l2_distance_gradient(k: KernelSpec) -> None:
    """dX[i] = (X[i] - Y[i]) * dZ[i] (float32), dY = -dX."""
    n = k.ins[2].shape[0]
    k.vars.update(N=n, D=k.ins[0].size // n if n else 0)


@kernel("LabelCrossEntropy", template=TEMPLATE)
def label_cross_entropy(k: KernelSpec) -> None:
    _require(k, "X", k.ins[0], [F32])
    _require(k, "label", k.ins[1], [I32])
    n, d = _batch_dims(k.op, k.ins[0].shape)
    k.vars.update(N=n, D=d, bad_label=k.error(1, f"a label is outside the valid range [0, {d})"),
                  log_th=repr(LOG_THRESHOLD))


@kernel("LabelCrossEntropyGradient", template=TEMPLATE)
def label_cross_entropy_gradient(k: KernelSpec) -> None:
    n, d = _batch_dims(k.op, k.ins[0].shape)
    k.vars.update(N=n, D=d, bad_label=k.error(1, f"a label is outside the valid range [0, {d})"),
                  log_th=_c(LOG_THRESHOLD, F32))


@kernel("CrossEntropy", template=TEMPLATE)
def cross_entropy(k: KernelSpec) -> None:
    _require(k, "X", k.ins[0], [F32])
    _require(k, "label", k.ins[1], [F32])
    n, d = _batch_dims(k.op, k.ins[0].shape)
    k.vars.update(N=n, D=d, log_th=repr(LOG_THRESHOLD), bad_label=k.error(
        1, "soft labels must be probabilities in [0, 1] (use LabelCrossEntropy for integer "
           "class labels)"))


@kernel("CrossEntropyGradient", template=TEMPLATE)
def cross_entropy_gradient(k: KernelSpec) -> None:
    n, d = _batch_dims(k.op, k.ins[0].shape)
    k.vars.update(N=n, D=d, log_th=_c(LOG_THRESHOLD, F32))


@kernel("SoftmaxWithLoss", template=TEMPLATE)
def softmax_with_loss(k: KernelSpec) -> None:
    """P = softmax of N x D rows; loss = scale * sum_i w_i l_i / sum_i w_i (0 if that is 0)."""
    prob = bool(k.args.label_prob)
    _require(k, "logits", k.ins[0], [F32])
    _require(k, "labels", k.ins[1], [F32] if prob else [I32])
    weighted = len(k.ins) == 3
    if weighted:
        _require(k, "weight", k.ins[2], [F32])
    _, n, d = _swl_dims(k.op, k.ins[0].shape, k.ins[1].shape,
                        k.ins[2].shape if weighted else None)
    k.vars.update(N=n, D=d, lanes=_lanes(d), prob=prob, weighted=weighted,
                  scale=repr(float(k.args.scale)), log_min=LOG_MIN,
                  by_batch=bool(k.args.average_by_batch_size))
    if prob:
        k.vars.update(negative=k.error(1, "label probabilities must be nonnegative"),
                      not_one=k.error(2, "the label probabilities of a row do not sum to 1 "
                                         "(+/- 1e-5)"))
    else:
        k.vars.update(bad_label=k.error(1, f"a label is outside the valid range [0, {d})"))


@kernel("SoftmaxWithLossGradient", template=TEMPLATE)
def softmax_with_loss_gradient(k: KernelSpec) -> None:
    """dX = w_i (P - onehot or P - T), times scale / total * dloss when total > 0 (float32)."""
    weighted = len(k.ins) == 5
    _, n, d = _swl_dims(k.op, k.ins[0].shape, k.ins[1].shape,
                        k.ins[2].shape if weighted else None)
    k.vars.update(N=n, D=d, prob=bool(k.args.label_prob), weighted=weighted,
                  P=k.ins[-2].name, dloss=k.ins[-1].name, scale=_c(k.args.scale, F32),
                  by_batch=bool(k.args.average_by_batch_size))
    if not k.vars["prob"]:
        k.vars.update(bad_label=k.error(1, f"a label is outside the valid range [0, {d})"))


@kernel("Accuracy", template=TEMPLATE)
def accuracy(k: KernelSpec) -> None:
    _require(k, "predictions", k.ins[0], [F32])
    _require(k, "labels", k.ins[1], [I32])
    n, d = k.ins[0].shape
    k.vars.update(N=n, D=d, top_k=int(k.args.top_k),
                  bad_label=k.error(1, f"a label is outside the valid range [0, {d})"))


@kernel("ArgMax", "ArgMin", template=TEMPLATE, macro="ArgReduce")
def arg_reduce(k: KernelSpec) -> None:
    """Index of the first extreme along `axis`: X seen as outer x R x inner."""
    x = k.ins[0]
    _require(k, "X", x, NUMERIC)
    axis = _arg_axis(k.op, x.ndim)
    outer, R, inner = (math.prod(x.shape[:axis]), x.shape[axis],
                       math.prod(x.shape[axis + 1:]))
    k.vars.update(outer=outer, R=R, inner=inner, cmp=">" if k.op.type == "ArgMax" else "<",
                  best=k.scratch_buf(inner, x.dtype).name if inner > 1 and R > 1 else None)
