"""Normalization ops: LRN, SpatialBN, Softmax and their gradients (Caffe2 1.x semantics).

Caffe2 registers these for float only; every one of them takes and returns float32. The
references compute in float64 and round once at the end.

Gradients are Caffe2 1.x's makers': SoftmaxGradient [Y, dY] -> dX; LRNGradient [X, Y, dY]
-> dX (it recomputes the scale from X; the forward's optional scale output is not read);
SpatialBNGradient [X, scale, dY, mean, inv_std] (+ [dscale_sum, dbias_sum] with
num_batches > 1) -> [dX, dscale, dbias]. Caffe2 allows none of them in place.
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


def _like(ctx, ref: int, types) -> None:
    """Every input in `types` ({index: TensorType}) is float32 and has input `ref`'s shape
    (a gradient op's dY and forward output have the forward input's shape)."""
    want = types[ref].shape
    for i, t in types.items():
        _type(ctx, i, t)
        if want is not None and t.shape is not None and t.shape != want:
            ctx.fail(f"input {i} '{ctx.inputs[i]}' has shape {list(t.shape)}; expected "
                     f"{list(want)}, the shape of input {ref} '{ctx.inputs[ref]}'",
                     blob=ctx.inputs[i])


# ----------------------------------------------------------------------------- LRN

_LRN_ARGS = [Arg("size", "int", 0), Arg("alpha", "float", 0.0), Arg("beta", "float", 0.0),
             Arg("bias", "float", 1.0), Arg("order", "str", "NCHW")]


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
        ctx.fail(f"input '{ctx.inputs[0]}' has shape {list(X.shape)}; {ctx.type} takes a 4-d "
                 f"{order} tensor", blob=ctx.inputs[0])
    return order


def _lrn_infer(ctx, X):
    _lrn_check(ctx, X)
    return [TensorType(X.shape, F32)] * ctx.num_outputs


def _window_sum(v: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Sum of v over the `size` entries along `axis` centred on each one, zero padded
    ([c - pre, c + size - 1 - pre] with pre = (size - 1) // 2; symmetric for odd sizes)."""
    pre = (size - 1) // 2
    n = v.shape[axis]
    pad = [(0, 0)] * v.ndim
    pad[axis] = (pre, size - 1 - pre)
    csum = np.cumsum(np.pad(v, pad), axis=axis)
    zero = list(csum.shape)
    zero[axis] = 1  # (by shape: with no channels and size 1 there is no entry to take it from)
    csum = np.concatenate([np.zeros(zero, csum.dtype), csum], axis=axis)
    return (np.take(csum, np.arange(size, size + n), axis=axis)
            - np.take(csum, np.arange(0, n), axis=axis))


def _lrn_scale(ctx, X: np.ndarray, order: str) -> np.ndarray:
    """bias + alpha/size * (window sum of x^2 over channels), in float64."""
    a = ctx.args
    axis = 1 if order == "NCHW" else 3
    return a.bias + (a.alpha / a.size) * _window_sum(np.square(X.astype(np.float64)), axis,
                                                     a.size)


def _lrn_grad(g):
    # Caffe2 1.x: LRNGradient [X, Y, dY] recomputes the scale from X, so a gradient of the
    # optional scale output (output 1) is not propagated.
    return [g.op("LRNGradient", [g.I(0), g.O(0), g.GO(0)], [g.GI(0)])]


@op("LRN", inputs=1, outputs=(1, 2), args=_LRN_ARGS, infer=_lrn_infer, grad=_lrn_grad)
def lrn(ctx, X):
    """Cross-channel LRN: scale = bias + alpha/size * (sum of x^2 over a window of `size`
    channels centred on c, zero padded); Y = X * scale^-beta. Output 1 (optional) is scale."""
    order = _lrn_check(ctx, TensorType(X.shape, X.dtype))
    scale = _lrn_scale(ctx, X, order)
    Y = (X * scale ** (-ctx.args.beta)).astype(np.float32)
    if ctx.num_outputs == 2:
        return Y, scale.astype(np.float32)
    return Y


def _lrn_gradient_infer(ctx, X, Y, dY):
    _lrn_check(ctx, X)
    _like(ctx, 0, {0: X, 1: Y, 2: dY})
    return [TensorType(X.shape, F32)]


@op("LRNGradient", inputs=3, outputs=1, args=_LRN_ARGS, infer=_lrn_gradient_infer)
def lrn_gradient(ctx, X, Y, dY):
    """dX = dY * scale^-beta - (2 alpha beta / size) * X * (window sum of dY * Y / scale),
    with the scale recomputed from X as the forward computes it (inputs: X, the forward
    output Y, its gradient dY). Y is read as given, as Caffe2 does."""
    _lrn_gradient_infer(ctx, *(TensorType(v.shape, v.dtype) for v in (X, Y, dY)))
    order = _order(ctx)
    a = ctx.args
    scale = _lrn_scale(ctx, X, order)
    dy = dY.astype(np.float64)
    # summed over the transposed window, which is the same one for the odd sizes LRN takes
    ratio = _window_sum(dy * Y / scale, 1 if order == "NCHW" else 3, a.size)
    dX = dy * scale ** (-a.beta) - (2.0 * a.alpha * a.beta / a.size) * X * ratio
    return dX.astype(np.float32)


# ----------------------------------------------------------------------------- SpatialBN

def _bn_check(ctx, X, scale, bias, mean, var):
    """Validate; returns (order, C) where C may be None (unknown shape)."""
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
    C = _bn_channels(ctx, order, X)
    stats = {1: scale, 2: bias, **({3: mean, 4: var} if is_test else {})}
    _bn_sized(ctx, order, C, X, stats)
    return order, C


def _bn_channels(ctx, order: str, X: TensorType) -> int | None:
    """C of input 0 (rank >= 3), or None when its shape is unknown."""
    if X.shape is None:
        return None
    if len(X.shape) < 3:
        ctx.fail(f"input '{ctx.inputs[0]}' has shape {list(X.shape)}; {ctx.type} takes a "
                 "tensor of rank >= 3", blob=ctx.inputs[0])
    return X.shape[1] if order == "NCHW" else X.shape[-1]


def _bn_sized(ctx, order: str, C, X: TensorType, stats) -> None:
    """Each of `stats` ({input index: TensorType}) holds C values (any shape of size C)."""
    for i, t in stats.items():
        if C is not None and t.shape is not None and t.size != C:
            ctx.fail(f"input {i} '{ctx.inputs[i]}' has shape {list(t.shape)}; expected {C} "
                     f"elements (C of {order} input {list(X.shape)})", blob=ctx.inputs[i])


def _bn_check_sums(ctx, order, C, X, sums) -> None:
    """With num_batches > 1 (training), inputs 5 and 6 hold C float32 values each."""
    if ctx.args.is_test or ctx.args.num_batches == 1:
        return
    for i, t in enumerate(sums, 5):
        _type(ctx, i, t)
    _bn_sized(ctx, order, C, X, dict(enumerate(sums, 5)))


def _bn_infer(ctx, X, scale, bias, mean, var, *sums):
    order, C = _bn_check(ctx, X, scale, bias, mean, var)
    _bn_check_sums(ctx, order, C, X, sums)
    y = TensorType(X.shape, F32)
    if ctx.num_outputs == 1:
        return [y]
    stat = TensorType(None if C is None else (C,), F32)
    return [y] + [stat] * 4


def _spatial_bn_grad(g):
    """Caffe2 1.x's GetSpatialBNGradient. Only Y's gradient is read; the running and saved
    statistics get no gradient and pass none on."""
    if g.args.is_test:
        # Caffe2 hands the *running* mean and variance where training hands the saved mean
        # and inverse std, and its SpatialBNGradient does not look at is_test: the variance
        # is used as if it were an inverse std (see SpatialBNGradient). Followed as is.
        if g.num_inputs != 5:
            g.fail(f"in test mode (is_test=1) the gradient of SpatialBN needs exactly 5 "
                   f"inputs, got {g.num_inputs}: {list(g.proto.input)}")
        ins = [g.I(0), g.I(1), g.GO(0), g.I(3), g.I(4)]
    elif g.num_outputs != 5:
        g.fail(f"in training mode (is_test=0) SpatialBN has 5 outputs (the gradient reads the "
               f"saved mean and inverse std, outputs 3 and 4), got {g.num_outputs}")
    elif g.args.num_batches > 1:
        # The multi-batch form reads the sums of dscale / dbias over the batches from the
        # blobs it then writes (Caffe2 reads GI(1), GI(2) as inputs 5 and 6).
        ins = [g.I(0), g.I(1), g.GO(0), g.O(3), g.O(4), g.GI(1), g.GI(2)]
    else:
        ins = [g.I(0), g.I(1), g.GO(0), g.O(3), g.O(4)]
    return [g.op("SpatialBNGradient", ins, [g.GI(0), g.GI(1), g.GI(2)])]


_BN_ARGS = [Arg("is_test", "int", 0), Arg("epsilon", "float", 1e-5),
            Arg("momentum", "float", 0.9), Arg("order", "str", "NCHW"),
            Arg("num_batches", "int", 1)]


@op("SpatialBN", inputs=(5, 7), outputs=(1, 5),
    inplace=[(0, 0), (3, 1), (4, 2), (5, 3), (6, 4)], args=_BN_ARGS, infer=_bn_infer,
    grad=_spatial_bn_grad)
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


def _bn_gradient_check(ctx, X, scale, dY, mean, rstd, sums):
    """Validate SpatialBNGradient; returns (order, C), C None where X's shape is unknown."""
    a = ctx.args
    order = _order(ctx)
    if a.num_batches < 1:
        ctx.fail(f"num_batches={a.num_batches}; must be >= 1", cls=ArgumentError)
    if a.num_batches > 1 and ctx.num_inputs != 7:
        ctx.fail(f"num_batches={a.num_batches} reads the sums of dscale and dbias over the "
                 f"batches from inputs 5 and 6; got {ctx.num_inputs} inputs",
                 cls=ArgumentError)
    _like(ctx, 0, {0: X, 2: dY})
    stats = {1: scale, 3: mean, 4: rstd}
    if a.num_batches > 1:
        stats.update(enumerate(sums, 5))
    for i, t in stats.items():
        _type(ctx, i, t)
    C = _bn_channels(ctx, order, X)
    _bn_sized(ctx, order, C, X, stats)
    return order, C


def _bn_gradient_infer(ctx, X, scale, dY, mean, rstd, *sums):
    _bn_gradient_check(ctx, X, scale, dY, mean, rstd, sums)
    # dscale and dbias both take scale's shape (Caffe2 sizes dbias like scale, not bias)
    return [TensorType(X.shape, F32), TensorType(scale.shape, F32),
            TensorType(scale.shape, F32)]


@op("SpatialBNGradient", inputs=(5, 7), outputs=3, inplace=[(5, 1), (6, 2)], args=_BN_ARGS,
    infer=_bn_gradient_infer)
def spatial_bn_gradient(ctx, X, scale, dY, mean, rstd, *sums):
    """Inputs X, scale, dY, mean, rstd (the saved batch mean and inverse std); outputs dX,
    dscale, dbias, with n = N * HxW values per channel:

        dbias = sum dY,  dscale = sum dY * (X - mean) * rstd,
        dX = scale * rstd * (dY - dbias / n - (X - mean) * rstd * dscale / n).

    With num_batches = k > 1, dscale and dbias are inputs 5 and 6 (their sums over k
    batches) divided by k, and n stays this batch's N * HxW. The op ignores is_test and
    epsilon, as Caffe2's does: the test-mode gradient passes the running variance as rstd.
    """
    order, C = _bn_gradient_check(ctx, *(TensorType(v.shape, v.dtype)
                                         for v in (X, scale, dY, mean, rstd)),
                                  [TensorType(v.shape, v.dtype) for v in sums])
    ch = (1, -1) + (1,) * (X.ndim - 2) if order == "NCHW" else (1,) * (X.ndim - 1) + (-1,)
    red = tuple(i for i in range(X.ndim) if i != (1 if order == "NCHW" else X.ndim - 1))
    x, dy = X.astype(np.float64), dY.astype(np.float64)
    m, r, sc = (v.astype(np.float64).reshape(C) for v in (mean, rstd, scale))
    n = X.size // C if C else 0
    k = ctx.args.num_batches
    if k > 1:
        dscale, dbias = (v.astype(np.float64).reshape(C) / k for v in sums)
    else:
        dbias = dy.sum(axis=red)
        dscale = (dy * (x - m.reshape(ch))).sum(axis=red) * r
    if n:
        dX = (sc * r).reshape(ch) * (dy - (dbias / n).reshape(ch)
                                     - (x - m.reshape(ch)) * (r * dscale / n).reshape(ch))
    else:  # nothing to normalize: dX is empty
        dX = dy
    f32 = np.float32
    return (dX.astype(f32), dscale.reshape(scale.shape).astype(f32),
            dbias.reshape(scale.shape).astype(f32))


# ----------------------------------------------------------------------------- Softmax

def _softmax_check(ctx, X):
    _type(ctx, 0, X)
    if X.shape is not None:
        return canonical_axis(ctx, ctx.args.axis, len(X.shape))
    return None


def _softmax_infer(ctx, X):
    _softmax_check(ctx, X)
    return [TensorType(X.shape, F32)]


def _rows(X: np.ndarray, axis: int) -> np.ndarray:
    """X as float64 [prod(dims[:axis]), prod(dims[axis:])], as Caffe2 coerces it."""
    d = int(np.prod(X.shape[axis:], dtype=np.int64))
    return X.astype(np.float64).reshape(X.size // d if d else 0, d)


@op("Softmax", inputs=1, outputs=1, args=[Arg("axis", "int", 1)], infer=_softmax_infer,
    grad=lambda g: [g.op("SoftmaxGradient", [g.O(0), g.GO(0)], [g.GI(0)])])
def softmax(ctx, X):
    """X coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])]; softmax over each row."""
    axis = _softmax_check(ctx, TensorType(X.shape, X.dtype))
    x = _rows(X, axis)
    if x.size == 0:
        return X.astype(np.float32).copy()
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(X.shape).astype(np.float32)


def _softmax_gradient_infer(ctx, Y, dY):
    _softmax_check(ctx, Y)
    _like(ctx, 0, {0: Y, 1: dY})
    return [TensorType(Y.shape, F32)]


@op("SoftmaxGradient", inputs=2, outputs=1, args=[Arg("axis", "int", 1)],
    infer=_softmax_gradient_infer)
def softmax_gradient(ctx, Y, dY):
    """dX = Y * (dY - sum(dY * Y)) per row of the 2-D view at `axis` (inputs: the forward
    output Y and its gradient dY)."""
    _softmax_gradient_infer(ctx, TensorType(Y.shape, Y.dtype), TensorType(dY.shape, dY.dtype))
    axis = _softmax_check(ctx, TensorType(Y.shape, Y.dtype))
    y, dy = _rows(Y, axis), _rows(dY, axis)
    dX = y * (dy - (y * dy).sum(axis=1, keepdims=True))
    return dX.reshape(Y.shape).astype(np.float32)
