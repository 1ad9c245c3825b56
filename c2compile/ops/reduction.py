"""Reductions and losses: Reduce*, SumElements, AveragedLoss, distances, cross entropies,
SoftmaxWithLoss, Accuracy, ArgMax/ArgMin (Caffe2 1.x semantics).

Points where Caffe2's behaviour is easy to get wrong (each pinned in tests/ops/test_reduction.py):

* Reduce*: `axes` absent = every axis; negative axes count from the end; keepdims=0 over every
  axis gives a 0-d tensor. Reducing nothing (an empty input) gives Caffe2's initial value:
  0 for Sum/Mean/L1/L2, the dtype's lowest value for Max and its largest for Min. Repeated axes
  are rejected (Caffe2 mis-sizes its output for them).
* SumElements / AveragedLoss / SumSqrElements give a 0-d tensor; averaging an empty input is 0.
* LabelCrossEntropy / CrossEntropy / SoftmaxWithLoss(label_prob=1) clip probabilities at 1e-20
  before the log. Integer labels are int32 (Caffe2 rejects int64) and are range-checked.
* SoftmaxWithLoss: loss = scale * sum_i w_i l_i / sum_i w_i (0 when the weights sum to 0;
  with average_by_batch_size=1 divided by N instead); `spatial=1` (pre-1.0 Caffe2's spatial
  mode, now SpatialSoftmaxWithLoss) is not implemented.
* Accuracy counts a sample as correct when its label ranks within top_k under a stable sort of
  the scores (descending): a tie with a lower class index ranks ahead of the label. An empty
  batch gives NaN, as Caffe2 does.
* ArgMax/ArgMin: `axis` is -1 (the last axis) or 0..ndim-1; other negative values are errors in
  Caffe2. Ties go to the first index; a NaN wins only at index 0 (strict comparisons). An empty
  axis gives index 0. The output is int64.

Gradients are Caffe2 1.x's (ops, inputs and values pinned in tests/ops/test_reduction_grad.py):
Reduce<X>Gradient [dY, X, Y], SumElementsGradient / AveragedLossGradient [X, dY],
SquaredL2DistanceGradient [X, Y, dZ] -> [dX, dY], (Label)CrossEntropyGradient [X, label, dY],
SoftmaxWithLossGradient [X, T, (weight), P, dloss]. Their odd corners are kept: ReduceMax/Min
give dY to every tied element, ReduceL1 treats |x| <= 1e-12 as 0, ReduceL2 gives dY itself where
the norm is below 1e-12, SoftmaxWithLoss skips the scaling by scale * dloss / sum(w) when the
weights sum to <= 0. Labels and weights get no gradient. SumSqrElements has no gradient in
Caffe2, and SumElementsInt, Accuracy, ArgMax and ArgMin must not have one: none has a rule, so
asking for one is an error, and a Python rule registered with core.GradientRegistry may supply
one, as in Caffe2.
"""
from __future__ import annotations

import numpy as np

from c2compile.errors import ArgumentError, OpError
from c2compile.ops.schema import Arg, TensorType, canonical_axis, op, require_dtype

F32, I32, I64 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)
NUMERIC = (np.int32, np.int64, np.float32, np.float64)
LOG_THRESHOLD = 1e-20  # Caffe2's kLOG_THRESHOLD


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64))


def _known(*types: TensorType) -> bool:
    return all(t.shape is not None for t in types)


def _scalar(value, dtype=np.float32) -> np.ndarray:
    return np.asarray(value, dtype=dtype).reshape(())


# ----------------------------------------------------------------------------- Reduce*

def _reduce_axes(ctx, ndim: int) -> tuple[int, ...]:
    if not ctx.has("axes") or not ctx.args.axes:
        return tuple(range(ndim))
    axes = sorted(canonical_axis(ctx, a, ndim, "axes") for a in ctx.args.axes)
    if len(set(axes)) != len(axes):
        ctx.fail(f"axes={ctx.args.axes} names an axis twice (input is {ndim}-d)",
                 cls=ArgumentError)
    return tuple(axes)


def _kept_shape(ctx, shape) -> tuple[int, ...]:
    """The reduced shape with keepdims: reduced axes become 1."""
    axes = _reduce_axes(ctx, len(shape))
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _reduce_shape(ctx, shape) -> tuple[int, ...]:
    if ctx.args.keepdims:
        return _kept_shape(ctx, shape)
    axes = _reduce_axes(ctx, len(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


_REDUCE_ARGS = [Arg("axes", "ints", None, "axes to reduce (negative count from the end); "
                    "absent or empty: all"),
                Arg("keepdims", "bool", True, "keep reduced axes as size 1"),
                Arg("allow_broadcast_fastpath", "bool", False,
                    "a speed hint for the gradient; results are unchanged")]


def _reduce_grad_rule(g):
    """Caffe2's GetReduceGradient: <type>Gradient [dY, X, Y] -> dX, the forward's args copied."""
    return [g.op(g.type + "Gradient", [g.GO(0), g.I(0), g.O(0)], [g.GI(0)])]


def _define_reduce(type_: str, dtypes, kernel, empty, backward, doc: str) -> None:
    """Register Reduce<type_> and its gradient op: `kernel(X, axes)` reduces, `empty(dtype)`
    fills empty inputs, `backward(dY, X, Y)` is dX (dY and Y shaped with keepdims)."""
    def infer(ctx, X):
        require_dtype(ctx, X, dtypes, "X")
        if X.shape is None:
            return [TensorType(None, X.dtype)]
        return [TensorType(_reduce_shape(ctx, X.shape), X.dtype)]

    def reference(ctx, X):
        (out,) = infer(ctx, TensorType(X.shape, X.dtype))
        if X.size == 0:
            return np.full(out.shape, empty(X.dtype), dtype=X.dtype)
        y = kernel(X, _reduce_axes(ctx, X.ndim))
        return np.asarray(y).astype(X.dtype, copy=False).reshape(out.shape)

    reference.__doc__ = doc
    op(type_, inputs=1, outputs=1, infer=infer, args=_REDUCE_ARGS,
       grad=_reduce_grad_rule)(reference)
    _define_reduce_gradient(type_ + "Gradient", dtypes, backward)


def _define_reduce_gradient(type_: str, dtypes, backward) -> None:
    """Register Reduce<...>Gradient [dY, X, Y] -> dX (Caffe2's ReduceGradientOp).

    Caffe2 reads dY and Y as the keepdims-shaped reduction of X, whatever their shapes; here
    they must at least hold that many elements."""
    def infer(ctx, dY, X, Y):
        require_dtype(ctx, X, dtypes, "X")
        for t, i in ((dY, 0), (Y, 2)):
            if t.dtype is not None and X.dtype is not None and t.dtype != X.dtype:
                ctx.fail(f"'{ctx.inputs[i]}' is {t.dtype} but X is {X.dtype}",
                         blob=ctx.inputs[i])
        if _known(dY, X, Y):
            kept = _kept_shape(ctx, X.shape)
            for t, i in ((dY, 0), (Y, 2)):
                if _prod(t.shape) != _prod(kept):
                    ctx.fail(f"'{ctx.inputs[i]}'{list(t.shape)} does not hold the "
                             f"{_prod(kept)} values of X{list(X.shape)} reduced over axes "
                             f"{list(_reduce_axes(ctx, X.ndim))}", blob=ctx.inputs[i])
        return [X]

    def reference(ctx, dY, X, Y):
        infer(ctx, *(TensorType(a.shape, a.dtype) for a in (dY, X, Y)))
        kept = _kept_shape(ctx, X.shape)
        with np.errstate(all="ignore"):
            dX = backward(dY.reshape(kept), X, Y.reshape(kept))
        return np.broadcast_to(dX, X.shape).astype(X.dtype)

    reference.__doc__ = f"dX of {type_[:-len('Gradient')]} from [dY, X, Y]: {backward.__doc__}"
    op(type_, inputs=3, outputs=1, infer=infer, args=_REDUCE_ARGS)(reference)


def _zero(dt):
    return 0


def _lowest(dt):
    return np.finfo(dt).min if dt.kind == "f" else np.iinfo(dt).min


def _highest(dt):
    return np.finfo(dt).max if dt.kind == "f" else np.iinfo(dt).max


# Caffe2's reducers' Backward, in the input's dtype (float32 arithmetic for float32).
REDUCE_EPS = np.float32(1e-12)  # Caffe2's kEps of the L1/L2 gradients


def _sum_backward(dY, X, Y):
    """dY, broadcast."""
    return dY


def _mean_backward(dY, X, Y):
    """dY * (float32(|Y|) / float32(|X|)), broadcast."""
    return dY * (np.float32(dY.size) / np.float32(X.size))


def _extreme_backward(dY, X, Y):
    """dY where X equals Y (every tie gets it; a NaN Y gives 0), else 0."""
    return np.where(X == Y, dY, dY.dtype.type(0))


def _l1_backward(dY, X, Y):
    """dY * sign(X), with |X| <= 1e-12 counting as 0."""
    return np.where(X < -REDUCE_EPS, -dY, np.where(X > REDUCE_EPS, dY, dY.dtype.type(0)))


def _l2_backward(dY, X, Y):
    """dY * X / Y; where Y < 1e-12 Caffe2 gives dY itself (not 0)."""
    return np.where(Y < REDUCE_EPS, dY, dY * X / Y)


_define_reduce("ReduceSum", NUMERIC, lambda X, axes: np.sum(X, axis=axes, dtype=X.dtype),
               _zero, _sum_backward, "Sum over `axes`.")
_define_reduce("ReduceMean", [F32], lambda X, axes: np.mean(X, axis=axes, dtype=np.float64),
               _zero, _mean_backward, "Mean over `axes`.")
_define_reduce("ReduceMax", NUMERIC, lambda X, axes: np.max(X, axis=axes),
               _lowest, _extreme_backward,
               "Maximum over `axes` (empty input: the dtype's lowest value).")
_define_reduce("ReduceMin", NUMERIC, lambda X, axes: np.min(X, axis=axes),
               _highest, _extreme_backward,
               "Minimum over `axes` (empty input: the dtype's largest value).")
_define_reduce("ReduceL1", [F32],
               lambda X, axes: np.sum(np.abs(X), axis=axes, dtype=np.float64),
               _zero, _l1_backward, "Sum of absolute values over `axes`.")
_define_reduce("ReduceL2", [F32],
               lambda X, axes: np.sqrt(np.sum(np.square(X, dtype=np.float64), axis=axes)),
               _zero, _l2_backward, "Euclidean norm over `axes`.")


# ----------------------------------------------------------------------------- whole-tensor sums

def _scalar_infer(in_dtype, out_dtype):
    def infer(ctx, X):
        require_dtype(ctx, X, [in_dtype], "X")
        return [TensorType((), out_dtype)]
    return infer


def _average(total, n: int):
    return total / n if n > 0 else 0.0


@op("SumElements", inputs=1, outputs=1, infer=_scalar_infer(F32, F32),
    args=[Arg("average", "bool", False, "divide the sum by the number of elements")],
    grad=lambda g: [g.op("SumElementsGradient", [g.I(0), g.GO(0)], [g.GI(0)])])
def sum_elements(ctx, X):
    """Sum (or mean, with average=1) of all elements, as a 0-d float32 tensor."""
    _scalar_infer(F32, F32)(ctx, TensorType(X.shape, X.dtype))
    total = np.sum(X, dtype=np.float64)
    return _scalar(_average(total, X.size) if ctx.args.average else total)


@op("SumElementsInt", inputs=1, outputs=1, infer=_scalar_infer(I32, I32))
def sum_elements_int(ctx, X):
    """Sum of all elements of an int32 tensor, as a 0-d int32 tensor (wrapping on overflow)."""
    _scalar_infer(I32, I32)(ctx, TensorType(X.shape, X.dtype))
    return _scalar(np.sum(X, dtype=np.int32), np.int32)


@op("SumSqrElements", inputs=1, outputs=1, infer=_scalar_infer(F32, F32),
    args=[Arg("average", "bool", False, "divide the sum by the number of elements")])
def sum_sqr_elements(ctx, X):
    """Sum (or mean, with average=1) of the squared elements, as a 0-d float32 tensor."""
    _scalar_infer(F32, F32)(ctx, TensorType(X.shape, X.dtype))
    total = np.sum(np.square(X, dtype=np.float64))
    return _scalar(_average(total, X.size) if ctx.args.average else total)


@op("AveragedLoss", inputs=1, outputs=1, infer=_scalar_infer(F32, F32),
    grad=lambda g: [g.op("AveragedLossGradient", [g.I(0), g.GO(0)], [g.GI(0)])])
def averaged_loss(ctx, X):
    """Mean of all elements as a 0-d float32 tensor (0 for an empty input)."""
    _scalar_infer(F32, F32)(ctx, TensorType(X.shape, X.dtype))
    return _scalar(_average(np.sum(X, dtype=np.float64), X.size))


def _sum_grad_infer(ctx, X, dY):
    require_dtype(ctx, X, [F32], "X")
    require_dtype(ctx, dY, [F32], "dY")
    if dY.shape is not None and _prod(dY.shape) != 1:
        ctx.fail(f"dY{list(dY.shape)} must hold the one gradient value of the sum",
                 blob=ctx.inputs[1])
    return [TensorType(X.shape, F32)]


def _sum_grad(ctx, X, dY, average: bool):
    """Every element gets dY (times 1/N when averaging), computed in double as Caffe2 does."""
    _sum_grad_infer(ctx, TensorType(X.shape, X.dtype), TensorType(dY.shape, dY.dtype))
    scale = 1.0 / X.size if average and X.size else 1.0
    return np.full(X.shape, float(dY.reshape(-1)[0]) * scale, np.float32)


@op("SumElementsGradient", inputs=2, outputs=1, infer=_sum_grad_infer,
    args=[Arg("average", "bool", False, "the forward averaged: dX = dY / N")])
def sum_elements_gradient(ctx, X, dY):
    """dX of SumElements from [X, dY]: dY in every element (dY / N with average=1)."""
    return _sum_grad(ctx, X, dY, ctx.args.average)


@op("AveragedLossGradient", inputs=2, outputs=1, infer=_sum_grad_infer)
def averaged_loss_gradient(ctx, X, dY):
    """dX of AveragedLoss from [X, dY]: dY / N in every element."""
    return _sum_grad(ctx, X, dY, True)


# ----------------------------------------------------------------------------- distances

def _rows_infer(ctx, X, Y):
    require_dtype(ctx, X, [F32], "X")
    require_dtype(ctx, Y, [F32], "Y")
    if not _known(X, Y):
        return [TensorType(None, F32)]
    if X.shape != Y.shape:
        ctx.fail(f"X{list(X.shape)} and Y{list(Y.shape)} must have the same shape")
    return [TensorType((X.shape[0] if X.ndim else 1,), F32)]


@op("SquaredL2Distance", inputs=2, outputs=1, infer=_rows_infer,
    grad=lambda g: [g.op("SquaredL2DistanceGradient", [g.I(0), g.I(1), g.GO(0)],
                         [g.GI(0), g.GI(1)])])
def squared_l2_distance(ctx, X, Y):
    """Z[i] = 0.5 * sum((X[i] - Y[i])^2) over all but the first axis (0-d inputs: one row)."""
    (out,) = _rows_infer(ctx, TensorType(X.shape, X.dtype), TensorType(Y.shape, Y.dtype))
    n = out.shape[0]
    d = (X.astype(np.float64) - Y).reshape(n, -1) if n else np.zeros((0, 0))
    return (0.5 * np.sum(d * d, axis=1)).astype(np.float32)


def _per_row_grad(ctx, dY: TensorType, n: int, blob: int) -> None:
    """Gradient ops of per-row losses take dY as Caffe2 does: 1-D, one value per row."""
    require_dtype(ctx, dY, [F32], "dY")
    if dY.shape is not None and dY.shape != (n,):
        ctx.fail(f"dY{list(dY.shape)} must be 1-D with one value per row ({n})",
                 blob=ctx.inputs[blob])


def _sl2_grad_infer(ctx, X, Y, dD):
    (out,) = _rows_infer(ctx, X, Y)
    if out.shape is not None:
        _per_row_grad(ctx, dD, out.shape[0], 2)
    return [TensorType(X.shape, F32), TensorType(Y.shape, F32)]


@op("SquaredL2DistanceGradient", inputs=3, outputs=2, infer=_sl2_grad_infer)
def squared_l2_distance_gradient(ctx, X, Y, dD):
    """[dX, dY] of SquaredL2Distance from [X, Y, dDistance]: dX[i] = (X[i] - Y[i]) * dD[i] in
    float32, dY = -dX."""
    _sl2_grad_infer(ctx, *(TensorType(a.shape, a.dtype) for a in (X, Y, dD)))
    n = dD.shape[0]
    d = (X - Y).reshape(n, X.size // n if n else 0) * dD[:, None]
    return d.reshape(X.shape), (-d).reshape(Y.shape)


# ----------------------------------------------------------------------------- cross entropies

def _batch_dims(ctx, shape) -> tuple[int, int]:
    """(N, D) of a LabelCrossEntropy/CrossEntropy input: 1-D X is one row of D."""
    if len(shape) == 0:
        ctx.fail("X must be at least 1-D, got a 0-d tensor", blob=ctx.inputs[0])
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], _prod(shape[1:])


def _label_xent_infer(ctx, X, label):
    require_dtype(ctx, X, [F32], "X")
    require_dtype(ctx, label, [I32], "label")
    if not _known(X, label):
        return [TensorType(None, F32)]
    n, _ = _batch_dims(ctx, X.shape)
    ls = label.shape
    if not (len(ls) == 1 or (len(ls) == 2 and ls[1] == 1)) or ls[0] != n:
        ctx.fail(f"label{list(ls)} must be [{n}] or [{n}, 1] for X{list(X.shape)}",
                 blob=ctx.inputs[1])
    return [TensorType((n,), F32)]


def _check_labels(ctx, labels, d: int) -> None:
    bad = (labels < 0) | (labels >= d)
    if bad.any():
        ctx.fail(f"label {int(labels[bad][0])} is outside the valid range [0, {d})",
                 blob=ctx.inputs[1], cls=OpError)


def _xent_grad_rule(grad_type: str):
    """[X, label, dY] -> dX; the label gets no gradient (Caffe2's g_input is None for it)."""
    return lambda g: [g.op(grad_type, [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])]


def _xent_grad_infer(forward_infer):
    def infer(ctx, X, label, dY):
        (out,) = forward_infer(ctx, X, label)
        if out.shape is not None:
            _per_row_grad(ctx, dY, out.shape[0], 2)
        return [TensorType(X.shape, F32)]
    return infer


@op("LabelCrossEntropy", inputs=2, outputs=1, infer=_label_xent_infer,
    grad=_xent_grad_rule("LabelCrossEntropyGradient"))
def label_cross_entropy(ctx, X, label):
    """Y[i] = -log(max(X[i, label[i]], 1e-20)) with X read as N x D probabilities."""
    _label_xent_infer(ctx, TensorType(X.shape, X.dtype), TensorType(label.shape, label.dtype))
    n, d = _batch_dims(ctx, X.shape)
    lab = label.reshape(n)
    _check_labels(ctx, lab, d)
    p = X.reshape(n, d)[np.arange(n), lab].astype(np.float64)
    return (-np.log(np.maximum(p, LOG_THRESHOLD))).astype(np.float32)


@op("LabelCrossEntropyGradient", inputs=3, outputs=1,
    infer=_xent_grad_infer(_label_xent_infer))
def label_cross_entropy_gradient(ctx, X, label, dY):
    """dX of LabelCrossEntropy from [X, label, dY]: -dY[i] / max(X[i, label[i]], 1e-20) at the
    label, 0 elsewhere (float32). Labels are range-checked (Caffe2 writes out of bounds)."""
    _xent_grad_infer(_label_xent_infer)(ctx, *(TensorType(a.shape, a.dtype)
                                               for a in (X, label, dY)))
    n, d = _batch_dims(ctx, X.shape)
    lab = label.reshape(n)
    _check_labels(ctx, lab, d)
    rows = np.arange(n)
    dX = np.zeros((n, d), np.float32)
    dX[rows, lab] = -dY / np.maximum(X.reshape(n, d)[rows, lab], np.float32(LOG_THRESHOLD))
    return dX.reshape(X.shape)


def _xent_infer(ctx, X, label):
    require_dtype(ctx, X, [F32], "X")
    require_dtype(ctx, label, [F32], "label")
    if not _known(X, label):
        return [TensorType(None, F32)]
    n, d = _batch_dims(ctx, X.shape)
    ls = label.shape
    # Caffe2 reads N * D label values; a 1-D label fits only when D == 1.
    if ls != (n, d) and not (len(ls) == 1 and ls[0] == n and d == 1):
        ctx.fail(f"label{list(ls)} must be [{n}, {d}] (or [{n}] when D == 1) for "
                 f"X{list(X.shape)}", blob=ctx.inputs[1])
    return [TensorType((n,), F32)]


@op("CrossEntropy", inputs=2, outputs=1, infer=_xent_infer,
    grad=_xent_grad_rule("CrossEntropyGradient"))
def cross_entropy(ctx, X, label):
    """Y[i] = -sum_j label[i, j] * log(max(X[i, j], 1e-20)); soft labels must lie in [0, 1]."""
    _xent_infer(ctx, TensorType(X.shape, X.dtype), TensorType(label.shape, label.dtype))
    n, d = _batch_dims(ctx, X.shape)
    t = label.reshape(n, d).astype(np.float64)
    if not ((t >= 0) & (t <= 1)).all():
        ctx.fail("soft labels must be probabilities in [0, 1] (use LabelCrossEntropy for "
                 "integer class labels)", blob=ctx.inputs[1], cls=OpError)
    logp = np.log(np.maximum(X.reshape(n, d).astype(np.float64), LOG_THRESHOLD))
    return (0.0 - np.sum(t * logp, axis=1)).astype(np.float32)  # no -0.0


@op("CrossEntropyGradient", inputs=3, outputs=1, infer=_xent_grad_infer(_xent_infer))
def cross_entropy_gradient(ctx, X, label, dY):
    """dX of CrossEntropy from [X, label, dY]: label / max(X, 1e-20) * -dY[i] (float32).
    The soft labels are not checked again (Caffe2 does not either)."""
    _xent_grad_infer(_xent_infer)(ctx, *(TensorType(a.shape, a.dtype) for a in (X, label, dY)))
    n, d = _batch_dims(ctx, X.shape)
    ratio = label.reshape(n, d) / np.maximum(X.reshape(n, d), np.float32(LOG_THRESHOLD))
    return (ratio * -dY[:, None]).reshape(X.shape)


# ----------------------------------------------------------------------------- SoftmaxWithLoss

def _swl_check_args(ctx) -> None:
    a = ctx.args
    if a.spatial:
        ctx.unsupported("spatial=1 (pre-1.0 spatial mode; use SpatialSoftmaxWithLoss semantics) "
                        "is not implemented")
    if a.scale < 0:
        ctx.fail(f"scale must be >= 0, got {a.scale}", cls=ArgumentError)
    if a.order != "NCHW":
        ctx.fail(f"order={a.order!r}: only NCHW is supported by SoftmaxWithLoss",
                 cls=ArgumentError)


def _swl_dims(ctx, x_shape, t_shape, w_shape) -> tuple[int, int, int]:
    """(axis, N, D) of SoftmaxWithLoss, validating label and weight shapes."""
    axis = canonical_axis(ctx, ctx.args.axis, len(x_shape))
    n, d = _prod(x_shape[:axis]), _prod(x_shape[axis:])
    ts = tuple(t_shape)
    want = f"labels{list(ts)} do not fit logits{list(x_shape)} at axis={ctx.args.axis}"
    if ctx.args.label_prob:
        if len(ts) < max(2, axis) or _prod(ts[:axis]) != n or _prod(ts[axis:]) != d:
            ctx.fail(f"{want}: with label_prob=1 they must be at least 2-D, flattening to "
                     f"{n} x {d}", blob=ctx.inputs[1])
    elif len(ts) == axis:
        if _prod(ts) != n:
            ctx.fail(f"{want}: expected {n} labels", blob=ctx.inputs[1])
    elif len(ts) < axis or _prod(ts[:axis]) != n or _prod(ts[axis:]) != 1:
        ctx.fail(f"{want}: expected {n} labels, shaped like logits up to the axis",
                 blob=ctx.inputs[1])
    if w_shape is not None and _prod(w_shape) != n:
        ctx.fail(f"weight{list(w_shape)} must hold one weight per example ({n})",
                 blob=ctx.inputs[2])
    return axis, n, d


def _swl_validate(ctx, X, T, W) -> None:
    """Arguments, dtypes and shapes of SoftmaxWithLoss(Gradient)'s logits, labels and weights
    (W: a tuple of zero or one TensorType)."""
    _swl_check_args(ctx)
    require_dtype(ctx, X, [F32], "logits")
    require_dtype(ctx, T, [F32] if ctx.args.label_prob else [I32], "labels")
    for w in W:
        require_dtype(ctx, w, [F32], "weight")
    if _known(X, T, *W):
        _swl_dims(ctx, X.shape, T.shape, W[0].shape if W else None)


def _swl_infer(ctx, X, T, *W):
    _swl_validate(ctx, X, T, W)
    return [TensorType(X.shape, F32), TensorType((), F32)]


def _swl_grad_rule(g):
    """Caffe2's GetSoftmaxWithLossGradient: [X, T, (weight), P, dloss] -> dX; only the logits
    get a gradient, and P's own gradient (if any) is ignored."""
    weight = [g.I(2)] if g.num_inputs == 3 else []
    return [g.op("SoftmaxWithLossGradient", [g.I(0), g.I(1)] + weight + [g.O(0), g.GO(1)],
                 [g.GI(0)])]


_SWL_ARGS = [
    Arg("scale", "float", 1.0, "multiplies the averaged loss (>= 0)"),
    Arg("label_prob", "bool", False, "labels are probability distributions (float)"),
    Arg("axis", "int", 1, "logits are flattened to N x D at this axis"),
    Arg("order", "str", "NCHW", "only NCHW"),
    Arg("spatial", "bool", False, "pre-1.0 spatial mode (not implemented)"),
    Arg("only_loss", "bool", False,
        "a memory hint for the gradient; Caffe2 1.10's CPU op writes P all the same"),
    Arg("average_by_batch_size", "bool", False,
        "divide the weighted loss sum by N instead of by the sum of the weights")]


@op("SoftmaxWithLoss", inputs=(2, 3), outputs=2, infer=_swl_infer, args=_SWL_ARGS,
    grad=_swl_grad_rule)
def softmax_with_loss(ctx, X, T, *W):
    """P = softmax(logits) over N x D rows; loss = scale * weighted mean cross entropy."""
    _swl_infer(ctx, *(TensorType(a.shape, a.dtype) for a in (X, T, *W)))
    _, n, d = _swl_dims(ctx, X.shape, T.shape, W[0].shape if W else None)
    x = X.reshape(n, d).astype(np.float64)
    shifted = x - (x.max(axis=1, keepdims=True) if d else 0)
    logp = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    p = np.exp(logp)
    w = W[0].reshape(n).astype(np.float64) if W else np.ones(n)
    if ctx.args.label_prob:
        t = T.reshape(n, d).astype(np.float64)
        if (t < 0).any():
            ctx.fail("label probabilities must be nonnegative", blob=ctx.inputs[1], cls=OpError)
        off = np.abs(t.sum(axis=1) - 1.0) >= 1e-5
        if off.any():
            ctx.fail(f"label probabilities of row {int(np.argmax(off))} do not sum to 1 "
                     "(+/- 1e-5)", blob=ctx.inputs[1], cls=OpError)
        losses = -np.sum(np.log(np.maximum(p, LOG_THRESHOLD)) * t, axis=1)
    else:
        lab = T.reshape(n)
        _check_labels(ctx, lab, d)
        losses = -logp[np.arange(n), lab]
    wsum = w.sum()
    denominator = n if ctx.args.average_by_batch_size else wsum
    loss = np.sum(losses * w) * ctx.args.scale / denominator if wsum != 0 else 0.0
    return p.astype(np.float32).reshape(X.shape), _scalar(loss)


def _swl_grad_infer(ctx, X, T, *rest):
    W, (P, dL) = rest[:-2], rest[-2:]
    _swl_validate(ctx, X, T, W)
    require_dtype(ctx, P, [F32], "P")
    require_dtype(ctx, dL, [F32], "dloss")
    if _known(X, P) and P.shape != X.shape:
        ctx.fail(f"P{list(P.shape)} must have the logits' shape {list(X.shape)}",
                 blob=ctx.inputs[-2])
    if dL.shape is not None and _prod(dL.shape) != 1:
        ctx.fail(f"dloss{list(dL.shape)} must hold the one gradient value of the loss",
                 blob=ctx.inputs[-1])
    return [TensorType(X.shape, F32)]


@op("SoftmaxWithLossGradient", inputs=(4, 5), outputs=1, infer=_swl_grad_infer,
    args=_SWL_ARGS)
def softmax_with_loss_gradient(ctx, X, T, *rest):
    """dX of SoftmaxWithLoss from [X, T, (weight), P, dloss], in float32 as Caffe2:
    w_i (P - onehot(T) or P - T) scaled by scale / sum_i w_i * dloss (scale / N with
    average_by_batch_size). Where the weights sum to <= 0 Caffe2 skips that scaling, so dX is
    w_i (P - T) whatever scale and dloss are; so it is here."""
    _swl_grad_infer(ctx, *(TensorType(a.shape, a.dtype) for a in (X, T, *rest)))
    W, (P, dL) = rest[:-2], rest[-2:]
    _, n, d = _swl_dims(ctx, X.shape, T.shape, W[0].shape if W else None)
    p = P.reshape(n, d)
    if ctx.args.label_prob:
        dX = p - T.reshape(n, d)
    else:
        lab = T.reshape(n)
        _check_labels(ctx, lab, d)
        rows = np.arange(n)
        dX = p.copy()
        dX[rows, lab] -= np.float32(1)
    total = np.float32(n)
    if W:
        w = W[0].reshape(n)
        dX = dX * w[:, None]
        total = np.add.accumulate(w)[-1] if n else np.float32(0)  # in order, as Caffe2
    if total > 0:
        denominator = np.float32(n) if ctx.args.average_by_batch_size else total
        dX = dX * (np.float32(ctx.args.scale) / denominator * dL.reshape(-1)[0])
    return dX.reshape(X.shape)


# ----------------------------------------------------------------------------- Accuracy

def _accuracy_infer(ctx, X, label):
    require_dtype(ctx, X, [F32], "predictions")
    require_dtype(ctx, label, [I32], "labels")
    if _known(X, label):
        if X.ndim != 2:
            ctx.fail(f"predictions must be 2-D (N x D), got {list(X.shape)}",
                     blob=ctx.inputs[0])
        if label.shape != (X.shape[0],):
            ctx.fail(f"labels{list(label.shape)} must be 1-D of length N={X.shape[0]}",
                     blob=ctx.inputs[1])
    return [TensorType((), F32)]


@op("Accuracy", inputs=2, outputs=1, infer=_accuracy_infer,
    args=[Arg("top_k", "int", 1, "count a sample correct if its label ranks in the top k")])
def accuracy(ctx, X, label):
    """Fraction of rows whose label ranks within top_k (stable descending sort of scores)."""
    _accuracy_infer(ctx, TensorType(X.shape, X.dtype), TensorType(label.shape, label.dtype))
    n, d = X.shape
    if n == 0:
        return _scalar(np.nan)
    _check_labels(ctx, label, d)
    lp = X[np.arange(n), label][:, None]
    cols = np.arange(d)[None, :]
    ahead = (X > lp) | ((X == lp) & (cols < label[:, None]))
    rank = 1 + ahead.sum(axis=1)
    return _scalar(np.count_nonzero(rank <= ctx.args.top_k) / n)


# ----------------------------------------------------------------------------- ArgMax / ArgMin

def _arg_axis(ctx, ndim: int) -> int:
    axis = ctx.args.axis
    if axis == -1:
        axis = ndim - 1
    if not 0 <= axis < ndim:
        ctx.fail(f"axis={ctx.args.axis} is out of range for a {ndim}-d input (Caffe2 takes "
                 "-1 or 0..ndim-1)", cls=ArgumentError)
    return axis


def _arg_infer(ctx, X):
    require_dtype(ctx, X, NUMERIC, "X")
    if X.shape is None:
        return [TensorType(None, I64)]
    axis = _arg_axis(ctx, X.ndim)
    shape = X.shape[:axis] + ((1,) if ctx.args.keepdims else ()) + X.shape[axis + 1:]
    return [TensorType(shape, I64)]


def _arg_reduce(ctx, X, better, np_arg):
    (out,) = _arg_infer(ctx, TensorType(X.shape, X.dtype))
    axis = _arg_axis(ctx, X.ndim)
    xs = np.moveaxis(X, axis, 0)
    if xs.shape[0] == 0:
        return np.zeros(out.shape, np.int64)
    if X.dtype.kind == "f" and np.isnan(X).any():
        # Caffe2 keeps the first index and moves only on a strict improvement.
        idx, best = np.zeros(xs.shape[1:], np.int64), xs[0]
        for k in range(1, xs.shape[0]):
            upd = better(xs[k], best)
            idx, best = np.where(upd, k, idx), np.where(upd, xs[k], best)
    else:
        idx = np_arg(xs, axis=0)
    return idx.astype(np.int64).reshape(out.shape)


_ARG_ARGS = [Arg("axis", "int", -1, "axis to reduce: -1 (last) or 0..ndim-1"),
             Arg("keepdims", "bool", True, "keep the reduced axis as size 1")]


@op("ArgMax", inputs=1, outputs=1, args=_ARG_ARGS, infer=_arg_infer)
def arg_max(ctx, X):
    """int64 index of the first largest element along `axis`."""
    return _arg_reduce(ctx, X, np.greater, np.argmax)


@op("ArgMin", inputs=1, outputs=1, args=_ARG_ARGS, infer=_arg_infer)
def arg_min(ctx, X):
    """int64 index of the first smallest element along `axis`."""
    return _arg_reduce(ctx, X, np.less, np.argmin)
