"""Matrix products: FC, FCTransposed, MatMul, BatchMatMul (Caffe2 1.x semantics).

All four run on float32 only, as Caffe2's CPU kernels do (a float64 input is an error there).

* **FC / FCTransposed** flatten X to 2-D at `axis` (M x K) and W at `axis_w`; FC's W is N x K
  (Y = X W^T + b), FCTransposed's is K x N (Y = X W + b). b is 1-D with N elements. Y has
  shape X.shape[:axis] + [N]. `float16_compute` is an engine hint accepted on every op.
* **MatMul** flattens A at `axis_a` and B at `axis_b` to 2-D, optionally transposes each, and
  returns the 2-D product. A third input (used by gradient nets) only gives Y its shape.
* **BatchMatMul** follows the kernel of Caffe2 1.x (`batch_matmul_op.h`), summed up here:
  - both 1-D: the dot product, shape (1,); trans flags play no part;
  - A 1-D (K,): B is [..., K, N] ([..., N, K] with trans_b) and Y is [..., N];
  - B 1-D (K,): A is [..., M, K] ([..., K, M] with trans_a) and Y is [..., M];
  - otherwise A [..., M, K], B [..., K, N] (after trans flags) give Y [batch..., M, N], where
    the batch dims broadcast numpy-style. Unless `broadcast=1`, the batch dims, left-padded
    with 1s to the same length, must be equal (so [1, M, K] x [K, N] is allowed without it).
  The 1-D forms need no `broadcast=1` in that kernel either. One Caffe2 bug is not kept: for
  B 1-D with trans_a=1 Caffe2 sizes Y as A.shape[:-1], which is wrong (and overruns its buffer)
  when A's last two dims differ; c2compile gives the product's true shape A.shape[:-2] + [M].

Gradients are Caffe2 1.x's (names, inputs and arguments pinned in tests/ops/test_linear_grad.py):

* FC / FCTransposed: one FCGradient / FCTransposedGradient op [X, W, dY] -> [dW, db, dX].
* MatMul: two MatMul ops (the forward operand as a third input gives each gradient its shape).
  Caffe2 passes axis_a/axis_b on as bools, so forwards flattened at an axis other than 0 or 1
  cannot be differentiated; their gradient MatMul fails with a shape error that says so.
* BatchMatMul: two BatchMatMul ops. broadcast=1 has no gradient (an error, as in Caffe2). A 1-D
  operand has none either: the gradient op of two 1-D blobs is an error (Caffe2 fails or
  returns a wrong shape). Where the batch dims differ only by leading 1s ([1, M, K] x [K, N])
  the gradient of the shorter operand has the longer one's rank ([1, K, N]), as in Caffe2.
"""
from __future__ import annotations

import numpy as np

from c2compile.ops.schema import Arg, TensorType, canonical_axis, op, require_dtype

F32 = np.dtype(np.float32)


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64))


def _known(*types: TensorType) -> bool:
    return all(t.shape is not None for t in types)


def _types(*arrays) -> list[TensorType]:
    """TensorTypes of input arrays: references run their shape rule to validate first."""
    return [TensorType(np.shape(a), np.asarray(a).dtype) for a in arrays]


# ----------------------------------------------------------------------------- FC

def _fc_mkn(ctx, x_shape, w_shape, transposed: bool) -> tuple[int, int, int]:
    """(M, K, N) of FC/FCTransposed (and their gradients), checking that X and W agree on K."""
    axis = canonical_axis(ctx, ctx.args.axis, len(x_shape))
    axis_w = canonical_axis(ctx, ctx.args.axis_w, len(w_shape), "axis_w")
    M, K = _prod(x_shape[:axis]), _prod(x_shape[axis:])
    w_rows, w_cols = _prod(w_shape[:axis_w]), _prod(w_shape[axis_w:])
    N, K_w = (w_cols, w_rows) if transposed else (w_rows, w_cols)
    layout = "K x N" if transposed else "N x K"
    if K_w != K:
        ctx.fail(f"X{list(x_shape)} flattened at axis={ctx.args.axis} is {M} x {K}, but "
                 f"W{list(w_shape)} flattened at axis_w={ctx.args.axis_w} is {w_rows} x "
                 f"{w_cols} ({layout}): K differs", blob=ctx.inputs[1])
    return M, K, N


def _fc_dims(ctx, x_shape, w_shape, b_shape, transposed: bool):
    """(M, K, N, output shape) of FC/FCTransposed, validating the three shapes."""
    M, K, N = _fc_mkn(ctx, x_shape, w_shape, transposed)
    axis = canonical_axis(ctx, ctx.args.axis, len(x_shape))
    if len(b_shape) != 1:
        ctx.fail(f"bias b must be 1-D, got shape {list(b_shape)}", blob=ctx.inputs[2])
    if b_shape[0] != N:
        ctx.fail(f"bias b has {b_shape[0]} elements, but W{list(w_shape)} gives N={N} outputs",
                 blob=ctx.inputs[2])
    return M, K, N, tuple(x_shape[:axis]) + (N,)


def _fc_infer(transposed: bool):
    def infer(ctx, X, W, b):
        for t, what in ((X, "X"), (W, "W"), (b, "b")):
            require_dtype(ctx, t, [F32], what)
        if not _known(X, W, b):
            return [TensorType(None, F32)]
        return [TensorType(_fc_dims(ctx, X.shape, W.shape, b.shape, transposed)[3], F32)]
    return infer


def _fc(ctx, X, W, b, transposed: bool):
    _fc_infer(transposed)(ctx, *_types(X, W, b))
    M, K, N, out_shape = _fc_dims(ctx, X.shape, W.shape, b.shape, transposed)
    W2 = W.reshape(K, N) if transposed else W.reshape(N, K).T
    Y = X.reshape(M, K) @ W2 + b
    return Y.astype(np.float32, copy=False).reshape(out_shape)


_FC_ARGS = [Arg("axis", "int", 1, "X is flattened to 2-D at this axis (negative counts from "
                "the end)"),
            Arg("axis_w", "int", 1, "W is flattened to 2-D at this axis")]


def _fc_grad_rule(grad_type: str):
    """Caffe2's GetFCGradient: one op [X, W, dY] -> [dW, db, dX], the forward's args copied."""
    def rule(g):
        return [g.op(grad_type, [g.I(0), g.I(1), g.GO(0)], [g.GI(1), g.GI(2), g.GI(0)])]
    return rule


@op("FC", inputs=3, outputs=1, args=_FC_ARGS, infer=_fc_infer(False),
    grad=_fc_grad_rule("FCGradient"))
def fc(ctx, X, W, b):
    """Y = X W^T + b with X flattened to M x K at `axis` and W (N x K) at `axis_w`."""
    return _fc(ctx, X, W, b, transposed=False)


@op("FCTransposed", inputs=3, outputs=1, args=_FC_ARGS, infer=_fc_infer(True),
    grad=_fc_grad_rule("FCTransposedGradient"))
def fc_transposed(ctx, X, W, b):
    """Y = X W + b: FC with W stored pre-transposed (K x N)."""
    return _fc(ctx, X, W, b, transposed=True)


# ----------------------------------------------------------------------------- FC gradients

def _fc_grad_dims(ctx, x_shape, w_shape, dy_shape, transposed: bool) -> tuple[int, int, int]:
    """(M, K, N) of FCGradient/FCTransposedGradient; dY must hold the M x N output.

    Caffe2 only reads M * N values of dY; its shape is not checked further (it is Y's)."""
    M, K, N = _fc_mkn(ctx, x_shape, w_shape, transposed)
    if _prod(dy_shape) != M * N:
        ctx.fail(f"dY{list(dy_shape)} has {_prod(dy_shape)} elements, but X{list(x_shape)} "
                 f"and W{list(w_shape)} give an output of {M} x {N}", blob=ctx.inputs[2])
    return M, K, N


def _fc_grad_infer(transposed: bool):
    def infer(ctx, X, W, dY):
        for t, what in ((X, "X"), (W, "W"), (dY, "dY")):
            require_dtype(ctx, t, [F32], what)
        n = None
        if _known(X, W):   # N is W's; dY, when known, must hold M x N
            n = (_fc_mkn(ctx, X.shape, W.shape, transposed)[2],)
            if dY.shape is not None:
                _fc_grad_dims(ctx, X.shape, W.shape, dY.shape, transposed)
        outs = [TensorType(W.shape, F32), TensorType(n, F32), TensorType(X.shape, F32)]
        return outs[:ctx.num_outputs]
    return infer


def _fc_grad(ctx, X, W, dY, transposed: bool):
    _fc_grad_infer(transposed)(ctx, *_types(X, W, dY))
    M, K, N = _fc_grad_dims(ctx, X.shape, W.shape, dY.shape, transposed)
    x, dy = X.reshape(M, K), dY.reshape(M, N)
    if X.size == 0:
        # Caffe2 zeroes dW and db when X is empty, also when only K is 0 and dY is not
        # empty (then the true db, dY's column sums, is not 0).
        dW, db = np.zeros(W.shape, np.float32), np.zeros(N, np.float32)
    else:
        dW = (x.T @ dy) if transposed else (dy.T @ x)        # K x N, or N x K
        db = dy.sum(axis=0, dtype=np.float64).astype(np.float32)
    w2 = W.reshape(K, N).T if transposed else W.reshape(N, K)
    dX = (dy @ w2).reshape(X.shape)
    outs = [dW.astype(np.float32, copy=False).reshape(W.shape), db,
            dX.astype(np.float32, copy=False)]
    return outs[:ctx.num_outputs]


# Caffe2 makes dX optional (2 or 3 outputs); the gradient pass always asks for it.
@op("FCGradient", inputs=3, outputs=(2, 3), args=_FC_ARGS, infer=_fc_grad_infer(False))
def fc_gradient(ctx, X, W, dY):
    """[dW, db, dX] of FC: dW = dY^T X (N x K), db = column sums of dY, dX = dY W."""
    return _fc_grad(ctx, X, W, dY, transposed=False)


@op("FCTransposedGradient", inputs=3, outputs=(2, 3), args=_FC_ARGS,
    infer=_fc_grad_infer(True))
def fc_transposed_gradient(ctx, X, W, dY):
    """[dW, db, dX] of FCTransposed: dW = X^T dY (K x N), db = column sums of dY, dX = dY W^T."""
    return _fc_grad(ctx, X, W, dY, transposed=True)


# ----------------------------------------------------------------------------- MatMul

def _matmul_dims(ctx, a_shape, b_shape):
    """(A as 2-D, B as 2-D, output shape) of MatMul after flattening and trans flags."""
    a = ctx.args
    ax_a = canonical_axis(ctx, a.axis_a, len(a_shape), "axis_a")
    ax_b = canonical_axis(ctx, a.axis_b, len(b_shape), "axis_b")
    A2 = (_prod(a_shape[:ax_a]), _prod(a_shape[ax_a:]))
    B2 = (_prod(b_shape[:ax_b]), _prod(b_shape[ax_b:]))
    m, k = A2[::-1] if a.trans_a else A2
    k_b, n = B2[::-1] if a.trans_b else B2
    if k != k_b:
        ctx.fail(f"A{list(a_shape)} as {'trans(A)' if a.trans_a else 'A'} is {m} x {k} but "
                 f"B{list(b_shape)} as {'trans(B)' if a.trans_b else 'B'} is {k_b} x {n}"
                 + (_MATMUL_GRAD_HINT if ctx.proto.is_gradient_op else ""))
    return A2, B2, (m, n)


# Caffe2 1.x's MatMul gradient maker keeps axis_a/axis_b in C++ bools, so the gradient MatMuls
# flatten at axis 0 or 1 only: a forward flattened elsewhere (an axis other than 0/1, or a
# negative one that is not the same axis) cannot be differentiated, in Caffe2 either.
_MATMUL_GRAD_HINT = (" (this MatMul is a gradient op: Caffe2's MatMul gradient flattens its "
                     "operands at axis 0 or 1 only, so a MatMul whose axis_a/axis_b flatten "
                     "elsewhere has no gradient)")


def _matmul_out(ctx, a_shape, b_shape, like_shape=None):
    """MatMul's output shape: the 2-D product's, or that of input 2 when given (same size)."""
    _, _, out = _matmul_dims(ctx, a_shape, b_shape)
    if like_shape is None:
        return out
    if _prod(like_shape) != _prod(out):
        ctx.fail(f"the product has shape {list(out)}, which cannot take the shape "
                 f"{list(like_shape)} of input 2", blob=ctx.inputs[2])
    return tuple(like_shape)


def _matmul_infer(ctx, A, B, *like):
    for t, what in ((A, "A"), (B, "B")):
        require_dtype(ctx, t, [F32], what)
    if not _known(A, B, *like):
        return [TensorType(None, F32)]
    return [TensorType(_matmul_out(ctx, A.shape, B.shape, like[0].shape if like else None), F32)]


# The gradients of Y = op(A) op(B) as Caffe2's MatMul and BatchMatMul gradient makers build
# them: per (trans_a, trans_b), dA and dB are each one product (left, right, trans_a, trans_b)
# of A, B and G = dY. Caffe2 copies none of the forward's arguments onto them.
_PRODUCT_GRADS = {
    (False, False): (("G", "B", 0, 1), ("A", "G", 1, 0)),  # dA = G B',  dB = A' G
    (False, True): (("G", "B", 0, 0), ("G", "A", 1, 0)),   # dA = G B,   dB = G' A
    (True, False): (("B", "G", 0, 1), ("A", "G", 0, 0)),   # dA = B G',  dB = A G
    (True, True): (("B", "G", 1, 1), ("G", "A", 1, 1)),    # dA = B' G', dB = G' A'
}


def _product_grads(g, op_type: str, matmul: bool):
    """The two gradient ops of MatMul (matmul=True) or BatchMatMul."""
    names = {"A": g.I(0), "B": g.I(1), "G": g.GO(0)}
    # MatMul's gradient ops flatten the forward operand at its forward axis, as a bool (see
    # _MATMUL_GRAD_HINT), and take it as a third input for their output's shape.
    axis = {"A": int(bool(g.args.axis_a)), "B": int(bool(g.args.axis_b))} if matmul else {}
    ops = []
    for i, (left, right, ta, tb) in enumerate(_PRODUCT_GRADS[bool(g.args.trans_a),
                                                              bool(g.args.trans_b)]):
        args = {k: 1 for k, on in (("trans_a", ta), ("trans_b", tb)) if on}
        inputs = [names[left], names[right]]
        if matmul:
            operand = "B" if i == 0 else "A"     # the forward operand this product reads
            args["axis_a" if left == operand else "axis_b"] = axis[operand]
            inputs.append(g.I(i))
        ops.append(g.op(op_type, inputs, [g.GI(i)], copy_args=False, **args))
    return ops


@op("MatMul", inputs=(2, 3), outputs=1,
    args=[Arg("axis_a", "int", 1, "A is flattened to 2-D at this axis"),
          Arg("axis_b", "int", 1, "B is flattened to 2-D at this axis"),
          Arg("trans_a", "bool", False, "transpose (2-D) A first"),
          Arg("trans_b", "bool", False, "transpose (2-D) B first")],
    infer=_matmul_infer, grad=lambda g: _product_grads(g, "MatMul", matmul=True))
def matmul(ctx, A, B, *like):
    """Y = op(A) op(B) on A, B flattened to 2-D; an optional third input gives Y its shape."""
    _matmul_infer(ctx, *_types(A, B, *like))
    out = _matmul_out(ctx, A.shape, B.shape, np.shape(like[0]) if like else None)
    A2, B2, _ = _matmul_dims(ctx, A.shape, B.shape)
    a, b = A.reshape(A2), B.reshape(B2)
    Y = (a.T if ctx.args.trans_a else a) @ (b.T if ctx.args.trans_b else b)
    return Y.astype(np.float32, copy=False).reshape(out)


# ----------------------------------------------------------------------------- BatchMatMul

def _bmm_shape(ctx, a_shape, b_shape) -> tuple[int, ...]:
    """Output shape of BatchMatMul (see the module docstring), validating the inputs."""
    ta, tb, bc = ctx.args.trans_a, ctx.args.trans_b, ctx.args.broadcast
    if len(a_shape) == 0 or len(b_shape) == 0:
        ctx.fail(f"inputs must be at least 1-D, got A{list(a_shape)} and B{list(b_shape)}")

    def mismatch(k_a, k_b):
        ctx.fail(f"inner dimensions differ: A{list(a_shape)} (trans_a={int(ta)}) gives K={k_a}, "
                 f"B{list(b_shape)} (trans_b={int(tb)}) gives K={k_b}")

    if len(a_shape) == 1 and len(b_shape) == 1:
        if ctx.proto.is_gradient_op and not a_shape[0] == b_shape[0] == 1:
            # Caffe2 fails here (when K != N) or gives a (1,) "gradient" of a 2-D operand.
            ctx.fail(f"this BatchMatMul is a gradient op of two 1-D blobs A{list(a_shape)} and "
                     f"B{list(b_shape)}: Caffe2's BatchMatMul gradient cannot differentiate a "
                     "1-D operand (it takes a dot product where an outer product is needed)")
        if a_shape[0] != b_shape[0]:
            mismatch(a_shape[0], b_shape[0])
        return (1,)
    if len(a_shape) == 1:
        k_b, n = (b_shape[-1], b_shape[-2]) if tb else (b_shape[-2], b_shape[-1])
        if a_shape[0] != k_b:
            mismatch(a_shape[0], k_b)
        return tuple(b_shape[:-2]) + (n,)
    if len(b_shape) == 1:
        m, k_a = (a_shape[-1], a_shape[-2]) if ta else (a_shape[-2], a_shape[-1])
        if b_shape[0] != k_a:
            mismatch(k_a, b_shape[0])
        return tuple(a_shape[:-2]) + (m,)
    m, k_a = (a_shape[-1], a_shape[-2]) if ta else (a_shape[-2], a_shape[-1])
    k_b, n = (b_shape[-1], b_shape[-2]) if tb else (b_shape[-2], b_shape[-1])
    if k_a != k_b:
        mismatch(k_a, k_b)
    batch_a, batch_b = tuple(a_shape[:-2]), tuple(b_shape[:-2])
    nd = max(len(batch_a), len(batch_b))
    pad_a = (1,) * (nd - len(batch_a)) + batch_a
    pad_b = (1,) * (nd - len(batch_b)) + batch_b
    try:
        batch = tuple(np.broadcast_shapes(pad_a, pad_b))
    except ValueError:
        ctx.fail(f"batch dimensions {list(batch_a)} of A and {list(batch_b)} of B do not "
                 "broadcast")
    if pad_a != pad_b and not bc:
        ctx.fail(f"batch dimensions {list(batch_a)} of A and {list(batch_b)} of B differ; "
                 "set broadcast=1 to broadcast them")
    return batch + (m, n)


def _bmm_infer(ctx, A, B):
    for t, what in ((A, "A"), (B, "B")):
        require_dtype(ctx, t, [F32], what)
    if not _known(A, B):
        return [TensorType(None, F32)]
    return [TensorType(_bmm_shape(ctx, A.shape, B.shape), F32)]


def _bmm_grad(g):
    """Caffe2's GetBatchMatMulGradient: two BatchMatMul ops (see _PRODUCT_GRADS)."""
    if g.args.broadcast:
        g.fail("Caffe2 cannot differentiate BatchMatMul with broadcast=1 (\"Gradient is "
               "currently not supported with broadcast=1 for BatchMatMul\")")
    return _product_grads(g, "BatchMatMul", matmul=False)


@op("BatchMatMul", inputs=2, outputs=1,
    args=[Arg("trans_a", "bool", False, "transpose the last two dims of A first"),
          Arg("trans_b", "bool", False, "transpose the last two dims of B first"),
          Arg("broadcast", "bool", False, "allow numpy-style broadcasting of batch dims")],
    infer=_bmm_infer, grad=_bmm_grad)
def batch_matmul(ctx, A, B):
    """Y[i] = op(A[i]) op(B[i]) over (broadcast) batch dims; 1-D operands as in numpy."""
    shape = _bmm_infer(ctx, *_types(A, B))[0].shape
    a = np.swapaxes(A, -1, -2) if ctx.args.trans_a and A.ndim >= 2 else A
    b = np.swapaxes(B, -1, -2) if ctx.args.trans_b and B.ndim >= 2 else B
    return np.matmul(a, b).astype(np.float32, copy=False).reshape(shape)
