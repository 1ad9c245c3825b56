"""Normalization ops: LRN, SpatialBN, Softmax (Caffe2 1.x semantics).

Caffe2 registers these for float only; every one of them takes and returns float32. The
references compute in float64 and round once at the end.
"""
from __future__ import annotations

import numpy as np

from c2compile.errors import ArgumentError
from c2compile.ops.schema import Arg, TensorType, canonical_axis, op, require_dtype

F32 = np.dtype(np.float32)
ORDERS = ("NCHW", "NHWC")


def _order(ctx) -> str:
    order = ctx.args.order
    if order not in ORDERS:
        ctx.fail(f"order={order!r}; must be \"NCHW\" or \"NHWC\"", cls=ArgumentError)
    return order


def _type(ctx, i: int, t: TensorType) -> None:
    require_dtype(ctx, t, [F32], what=f"input {i} '{ctx.inputs[i]}'")


# ----------------------------------------------------------------------------- LRN

def _lrn_check(ctx, X: TensorType) -> str:
    a = ctx.args
    if a.size <= 0 or a.size % 2 == 0:
        ctx.fail(f"size={a.size}; LRN needs a positive odd window size", cls=ArgumentError)
    if not a.alpha > 0:
        ctx.fail(f"alpha={a.alpha}; LRN needs alpha > 0", cls=ArgumentError)
    if not a.beta > 0:
        ctx.fail(f"beta={a.beta}; LRN needs beta > 0", cls=ArgumentError)
    order = _order(ctx)
    _type(ctx, 0, X)
    if X.shape is not None and len(X.shape) != 4:
        ctx.fail(f"input '{ctx.inputs[0]}' has shape {list(X.shape)}; LRN takes a 4-d "
                 f"{order} tensor", blob=ctx.inputs[0])
    return order


def _lrn_infer(ctx, X):
    _lrn_check(ctx, X)
    return [TensorType(X.shape, F32)] * ctx.num_outputs


@op("LRN", inputs=1, outputs=(1, 2),
    args=[Arg("size", "int", 0), Arg("alpha", "float", 0.0), Arg("beta", "float", 0.0),
          Arg("bias", "float", 1.0), Arg("order", "str", "NCHW")],
    infer=_lrn_infer)
def lrn(ctx, X):
    """Cross-channel LRN: scale = bias + alpha/size * (sum of x^2 over a window of `size`
    channels centred on c, zero padded); Y = X * scale^-beta. Output 1 (optional) is scale."""
    order = _lrn_check(ctx, TensorType(X.shape, X.dtype))
    a = ctx.args
    axis = 1 if order == "NCHW" else 3
    C = X.shape[axis]
    pre = (a.size - 1) // 2
    sq = np.square(X.astype(np.float64))
    pad = [(0, 0)] * 4
    pad[axis] = (pre, a.size - 1 - pre)
    padded = np.pad(sq, pad)
    csum = np.cumsum(padded, axis=axis)
    csum = np.concatenate([np.zeros_like(np.take(csum, [0], axis=axis)), csum], axis=axis)
    window = (np.take(csum, np.arange(a.size, a.size + C), axis=axis)
              - np.take(csum, np.arange(0, C), axis=axis))
    scale = a.bias + (a.alpha / a.size) * window
    Y = (X * scale ** (-a.beta)).astype(np.float32)
    if ctx.num_outputs == 2:
        return Y, scale.astype(np.float32)
    return Y


# ----------------------------------------------------------------------------- SpatialBN

def _bn_check(ctx, X, scale, bias, mean, var):
    """Validate; returns (order, C, stats_shape) where C may be None (unknown shape)."""
    a = ctx.args
    is_test = bool(a.is_test)
    want = 1 if is_test else 5
    if ctx.num_outputs != want:
        mode = "test mode (is_test=1)" if is_test else "training mode (is_test=0)"
        ctx.fail(f"in {mode} SpatialBN has {want} output{'s' * (want > 1)}, got "
                 f"{ctx.num_outputs}: {ctx.outputs}", cls=ArgumentError)
    if not a.epsilon > 0:
        ctx.fail(f"epsilon={a.epsilon}; must be > 0", cls=ArgumentError)
    if not 0 <= a.momentum <= 1:
        ctx.fail(f"momentum={a.momentum}; must be in [0, 1]", cls=ArgumentError)
    order = _order(ctx)
    if a.num_batches < 1:
        ctx.fail(f"num_batches={a.num_batches}; must be >= 1", cls=ArgumentError)
    if not is_test and a.num_batches > 1 and ctx.num_inputs != 7:
        ctx.fail(f"num_batches={a.num_batches} takes the batch statistics from inputs 5 and 6 "
                 f"(sums and sums of squares over the batches); got {ctx.num_inputs} inputs",
                 cls=ArgumentError)
    if not is_test:
        for i, o in ((3, 1), (4, 2)):
            if ctx.inputs[i] != ctx.outputs[o]:
                ctx.fail(f"in training mode output {o} '{ctx.outputs[o]}' must be the same "
                         f"blob as input {i} '{ctx.inputs[i]}' (running statistics are "
                         "updated in place)", blob=ctx.outputs[o], cls=ArgumentError)
    for i, t in enumerate((X, scale, bias, mean, var)):
        _type(ctx, i, t)
    if X.shape is None:
        return order, None
    if len(X.shape) < 3:
        ctx.fail(f"input '{ctx.inputs[0]}' has shape {list(X.shape)}; SpatialBN takes a "
                 "tensor of rank >= 3", blob=ctx.inputs[0])
    C = X.shape[1] if order == "NCHW" else X.shape[-1]
    checks = [(1, scale), (2, bias)] + ([(3, mean), (4, var)] if is_test else [])
    for i, t in checks:
        if t.shape is not None and t.size != C:
            ctx.fail(f"input {i} '{ctx.inputs[i]}' has shape {list(t.shape)}; expected {C} "
                     f"elements (C of {order} input {list(X.shape)})", blob=ctx.inputs[i])
    return order, C


def _bn_check_sums(ctx, order, C, X, sums) -> None:
    """With num_batches > 1 (training), inputs 5 and 6 hold C float32 values each."""
    if ctx.args.is_test or ctx.args.num_batches == 1:
        return
    for i, t in enumerate(sums, 5):
        _type(ctx, i, t)
        if C is not None and t.shape is not None and t.size != C:
            ctx.fail(f"input {i} '{ctx.inputs[i]}' has shape {list(t.shape)}; expected {C} "
                     f"elements (C of {order} input {list(X.shape)})", blob=ctx.inputs[i])


def _bn_infer(ctx, X, scale, bias, mean, var, *sums):
    order, C = _bn_check(ctx, X, scale, bias, mean, var)
    _bn_check_sums(ctx, order, C, X, sums)
    y = TensorType(X.shape, F32)
    if ctx.num_outputs == 1:
        return [y]
    stat = TensorType(None if C is None else (C,), F32)
    return [y] + [stat] * 4


@op("SpatialBN", inputs=(5, 7), outputs=(1, 5),
    inplace=[(0, 0), (3, 1), (4, 2), (5, 3), (6, 4)],
    args=[Arg("is_test", "int", 0), Arg("epsilon", "float", 1e-5),
          Arg("momentum", "float", 0.9), Arg("order", "str", "NCHW"),
          Arg("num_batches", "int", 1)],
    infer=_bn_infer)
def spatial_bn(ctx, X, scale, bias, mean, var, *sums):
    """Batch normalization over every axis but C.

    Test mode: Y = (X - mean) / sqrt(var + eps) * scale + bias with the given estimates.
    Training mode: batch mean and biased variance normalize Y; outputs Y, running_mean,
    running_var (running = momentum * running + (1 - momentum) * batch, updated in place;
    the variance folded in is the *unbiased* one, batch var * n / (n - 1) for n values per
    channel, so NaN when n = 1, as in Caffe2 1.10; a running input whose size is not C starts
    from zeros), saved_mean, saved_inv_var (= 1 / sqrt(var + eps), an inverse std despite the
    name). With num_batches = k > 1 the batch statistics come from inputs 5 and 6, the sums
    and sums of squares of k batches like X: mean = sum / (k n), var = sumsq / (k n) - mean^2,
    and the running variance's n is k n.
    """
    order, C = _bn_check(ctx, *(TensorType(v.shape, v.dtype) for v in (X, scale, bias, mean, var)))
    _bn_check_sums(ctx, order, C, X, [TensorType(v.shape, v.dtype) for v in sums])
    a = ctx.args
    eps = np.float64(np.float32(a.epsilon))
    x = X.astype(np.float64)
    ch = (1,) + (-1,) + (1,) * (X.ndim - 2) if order == "NCHW" else (1,) * (X.ndim - 1) + (-1,)
    red = tuple(i for i in range(X.ndim) if i != (1 if order == "NCHW" else X.ndim - 1))
    sc = scale.astype(np.float64).reshape(C)
    bi = bias.astype(np.float64).reshape(C)
    if a.is_test:
        rstd = 1.0 / np.sqrt(var.astype(np.float64).reshape(C) + eps)
        alpha = sc * rstd
        beta = bi - alpha * mean.astype(np.float64).reshape(C)
        return (x * alpha.reshape(ch) + beta.reshape(ch)).astype(np.float32)
    m = np.float64(np.float32(a.momentum))
    run_mean = mean.reshape(C).astype(np.float64) if mean.size == C else np.zeros(C)
    run_var = var.reshape(C).astype(np.float64) if var.size == C else np.zeros(C)
    if X.shape[0] == 0:
        zero = np.zeros(C, np.float32)
        return (X.astype(np.float32).copy(), run_mean.astype(np.float32),
                run_var.astype(np.float32), zero, zero.copy())
    with np.errstate(invalid="ignore", divide="ignore"):  # HxW == 0 or n == 1: NaN, as Caffe2
        count = np.float64(X.size // C if C else 0)
        if a.num_batches > 1:
            count *= a.num_batches
            bmean = sums[0].astype(np.float64).reshape(C) / count
            bvar = sums[1].astype(np.float64).reshape(C) / count - np.square(bmean)
        else:
            bmean = x.sum(axis=red) / count
            bvar = np.square(x - bmean.reshape(ch)).sum(axis=red) / count
        rstd = 1.0 / np.sqrt(bvar + eps)
        unbiased = bvar * (count / (count - 1))
    alpha = sc * rstd
    beta = bi - alpha * bmean
    Y = (x * alpha.reshape(ch) + beta.reshape(ch)).astype(np.float32)
    f32 = np.float32
    return (Y, (m * run_mean + (1 - m) * bmean).astype(f32),
            (m * run_var + (1 - m) * unbiased).astype(f32), bmean.astype(f32), rstd.astype(f32))


# ----------------------------------------------------------------------------- Softmax

def _softmax_check(ctx, X):
    _type(ctx, 0, X)
    if X.shape is not None:
        return canonical_axis(ctx, ctx.args.axis, len(X.shape))
    return None


def _softmax_infer(ctx, X):
    _softmax_check(ctx, X)
    return [TensorType(X.shape, F32)]


@op("Softmax", inputs=1, outputs=1, args=[Arg("axis", "int", 1)], infer=_softmax_infer)
def softmax(ctx, X):
    """X coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])]; softmax over each row."""
    axis = _softmax_check(ctx, TensorType(X.shape, X.dtype))
    n = int(np.prod(X.shape[:axis], dtype=np.int64))
    x = X.astype(np.float64).reshape(n, -1) if X.size else X.astype(np.float64)
    if x.size == 0:
        return X.astype(np.float32).copy()
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(X.shape).astype(np.float32)
