"""GEMM-shaped kernels through scipy's BLAS (template: linear.pyx.j2).

FC, FCTransposed, their gradients, MatMul and BatchMatMul are float32-only (as the reference),
so every product is one `sgemm` call, or a loop of them over BatchMatMul's batch dims. (MatMul's
and BatchMatMul's gradients are MatMul and BatchMatMul ops themselves.) Geometry comes from the
op definitions' own helpers (`c2compile.ops.linear`), never re-derived here.

A row-major product C[M,N] = op(A) op(B) is the column-major product C^T = op(B)^T op(A)^T,
so `gemm()` below swaps the operands and turns the transpose flags into BLAS's.
"""
from __future__ import annotations

import numpy as np

from c2compile.codegen import blas
from c2compile.codegen.cython.lowering import KernelSpec, Unsupported, kernel
from c2compile.ops.linear import _bmm_shape, _fc_dims, _fc_grad_dims, _matmul_dims


def _float32_only(k: KernelSpec) -> None:
    """Every buffer but MatMul's third input (which only gives Y its shape) is float32."""
    for b in k.ins[:2 if k.op.type == "MatMul" else None] + k.outs:
        if b.dtype != np.float32:
            raise Unsupported(f"{k.op.type}: float32 only (got {b.dtype})")


def gemm(M: int, N: int, K: int, a: str, ta: bool, b: str, tb: bool, c: str,
         beta: str = "0.0", split: tuple[str, int] | None = None) -> dict:
    """sgemm arguments for row-major C[M,N] = op(A)[M,K] op(B)[K,N] (+ beta C), each thread's
    part of it (`split`: _split_gemm) as one sgemm or as blocks of `rows` column-major rows.

    `a`, `b`, `c` are C expressions of the (row-major, contiguous) operands; A is stored M x K
    (K x M when `ta`), B is stored K x N (N x K when `tb`).
    """
    g = dict(transa="T" if tb else "N", transb="T" if ta else "N",
             m=N, n=M, k=K, a=b, lda=max(1, K if tb else N), b=a, ldb=max(1, M if ta else K),
             c=c, ldc=max(1, N), beta=beta, M=M, N=N, K=K,
             row_a=1 if ta else K,   # elements from one row of op(A) to the next
             col_b=K if tb else 1)   # and from one column of op(B) to the next
    # A thread's sgemm too big for OpenBLAS's small-matrix kernel runs as blocks of rows of
    # column-major C (columns of Y) that fit it, re-reading op(B) from cache. Single thread,
    # whole call against blocks: 10x64x1568 ("T", "N"; the MLP's last FC) 45 -> 99 GFLOP/s,
    # 400x500x64 ("N", "T"; LeNet's fc3 dW, per thread) 97 -> 115, 400x64x500 ("N", "N"; its
    # dX) 88 -> 99, 1000x20x100 61 -> 112.
    m, n = g["m"], g["n"]
    if split:
        at = split[1]
        m, n = (max(at, N - at), n) if split[0] == "cols" else (m, max(at, M - at))
    g["rows"] = blas.small_rows(g["transa"], g["transb"], m, n, K)
    return g


@kernel("FC", "FCTransposed", template="linear.pyx.j2", macro="FC", epilogues=("Relu",))
def fc(k: KernelSpec) -> None:
    """Y[M,N] = X[M,K] W^T + b (FC: W is N x K; FCTransposed: W is K x N)."""
    _float32_only(k)
    transposed = k.op.type == "FCTransposed"
    M, K, N, _ = _fc_dims(k.op, k.ins[0].shape, k.ins[1].shape, k.ins[2].shape, transposed)
    split = _split_gemm(M, N, K)
    g = gemm(M, N, K, "i0", False, "i1", not transposed, "o0", beta="1.0", split=split)
    # Small batches (M <= SWAP_MAX_ROWS, fewer rows than columns, so a split is by columns):
    # C = X W^T column-major, X as OpenBLAS's A and W as its untransposed B, then copied into
    # Y with the bias and Relu; the default sgemm("T", "N") packs W transposed on every call.
    swap = not transposed and K > 0 and M <= SWAP_MAX_ROWS and M < N
    if swap:
        assert not split or split[0] == "cols", split
        k.vars["c"] = k.scratch_buf(M * N).name
        # in blocks of columns that OpenBLAS's small-matrix kernel takes, if it has one
        # (single thread: 64x8x1568 97 GFLOP/s, 64x16x784 100, against 83-90 for the
        # MLP's whole halves); each block is copied into Y while in cache
        k.vars["NC"] = blas.small_block("T", "N", M, K, columns=True) or N
    k.vars.update(M=M, K=K, N=N, transposed=transposed, split=split, g=g, swap=swap)


@kernel("FCGradient", "FCTransposedGradient", template="linear.pyx.j2", macro="FCGradient")
def fc_gradient(k: KernelSpec) -> None:
    """[dW, db, (dX)] from X[M,K], W and dY[M,N]: two sgemms and a column sum."""
    _float32_only(k)
    transposed = k.op.type == "FCTransposedGradient"
    M, K, N = _fc_grad_dims(k.op, k.ins[0].shape, k.ins[1].shape, k.ins[2].shape, transposed)
    # dW: K x N = X^T dY (FCTransposed) or N x K = dY^T X (FC); dX: M x K = dY op(W), with W
    # stored K x N (FCTransposed: op = ^T) or N x K.
    split_w = _split_gemm(K, N, M) if transposed else _split_gemm(N, K, M)
    split_x = _split_gemm(M, K, N)
    gw = (gemm(K, N, M, "i0", True, "i2", False, "o0", split=split_w) if transposed
          else gemm(N, K, M, "i2", True, "i0", False, "o0", split=split_w))
    gx = gemm(M, K, N, "i2", False, "i1", transposed, "o2", split=split_x)
    k.vars.update(M=M, N=N, K=K, transposed=transposed, dx=len(k.outs) == 3,
                  gw=gw, split_w=split_w, gx=gx, split_x=split_x,
                  db=k.scratch_buf(max(N, 1), np.float64).name)


# Multiply-adds from which a GEMM is worth two threads. With OpenBLAS single-threaded
# (config.blas_threads == 1, the default) a big GEMM is split between 2 OpenMP threads:
# benchmarks/gemm_threads.py measured 64x1568->1568 at 4.1 ms on one thread and 2.3 ms split
# by rows; split by columns (each thread half of W) it takes 1.8-1.9 ms against 2.3-2.6 by
# rows in the same run. Small GEMMs stay on one thread, where waking a pool costs more than
# it saves.
SPLIT_MACS = 1 << 24
# FC computes C = X W^T (then copies it into Y) for batches up to this many rows: single
# thread sgemm, best of 40, that form against Y^T = W X^T: 64x784->784 0.79 vs 0.89 ms,
# 64x1568->784 1.59 vs 1.77, 64x800->500 0.52 vs 0.58, 16x784->784 0.25 vs 0.35, 1x1568->784
# 0.23 vs 0.43, 128x1024->1024 2.69 vs 3.23; even at 256x784->784 (3.02 vs 3.05), slower at
# 1024x256->64 (0.39 vs 0.34). The MLP (interleaved, whole net): 2.84 -> 2.67 ms.
SWAP_MAX_ROWS = 128


def _split_gemm(M: int, N: int, K: int, macs: int = SPLIT_MACS) -> tuple[str, int] | None:
    """How two threads share C[M,N] = op(A) op(B): ("rows", r) gives the first thread rows
    [0, r), ("cols", c) columns [0, c); None: one thread. Each thread reads all of one
    operand and half of the other, so the split halves the bigger one: a batch-64 FC's
    weights (N x K) are split by columns, and each thread streams half of them."""
    if not _split_rows(M, N, K, macs) and not _split_rows(N, M, K, macs):
        return None
    return ("cols", N // 2) if N > M else ("rows", M // 2)


def _split_rows(M: int, N: int, K: int, macs: int = SPLIT_MACS) -> int:
    """Rows of the output C[M,N] = op(A) op(B) (and of op(A)) the first thread takes (0: no
    split): from `macs` multiply-adds on."""
    from c2compile import config
    if config.blas_threads != 1 or M < 2 or M * N * K < macs:
        return 0
    return M // 2


@kernel("MatMul", template="linear.pyx.j2")
def matmul(k: KernelSpec) -> None:
    """Y[M,N] = op(A) op(B) on A, B flattened to 2-D at axis_a / axis_b."""
    _float32_only(k)
    (ra, ca), (rb, cb), (M, N) = _matmul_dims(k.op, k.ins[0].shape, k.ins[1].shape)
    ta, tb = bool(k.args.trans_a), bool(k.args.trans_b)
    K = ra if ta else ca
    split = _split_gemm(M, N, K)
    k.vars.update(M=M, N=N, K=K, g=gemm(M, N, K, "i0", ta, "i1", tb, "o0", split=split),
                  split=split)


def _batch_dims(out_batch, a_batch, b_batch, a_mat, b_mat, y_mat):
    """Loop dims of BatchMatMul: [(size, A stride, B stride, Y stride)], outermost first.

    Broadcast dims get stride 0; dims of size 1 are dropped and neighbours that step
    through memory as one dim are merged, so most products need one loop (or none).
    """
    nd = len(out_batch)
    pa = (1,) * (nd - len(a_batch)) + tuple(a_batch)
    pb = (1,) * (nd - len(b_batch)) + tuple(b_batch)

    def strides(shape, mat):
        out, acc = [], mat
        for d in reversed(shape):
            out.append(acc if d > 1 else 0)
            acc *= d
        return out[::-1]

    sa, sb, sy = strides(pa, a_mat), strides(pb, b_mat), strides(out_batch, y_mat)
    dims = [[n, a, b, y] for n, a, b, y in zip(out_batch, sa, sb, sy) if n > 1]
    merged: list[list[int]] = []
    for d in dims:
        if merged:
            p = merged[-1]
            if all(p[i] == d[i] * d[0] for i in (1, 2, 3)):
                p[0] *= d[0]
                p[1], p[2], p[3] = d[1], d[2], d[3]
                continue
        merged.append(d)
    return merged


@kernel("BatchMatMul", template="linear.pyx.j2")
def batch_matmul(k: KernelSpec) -> None:
    """Y[b] = op(A[b]) op(B[b]) over broadcast batch dims; 1-D operands as numpy.matmul."""
    _float32_only(k)
    a_shape, b_shape = k.ins[0].shape, k.ins[1].shape
    _bmm_shape(k.op, a_shape, b_shape)   # validates (the planner ran it already)
    ta, tb = bool(k.args.trans_a), bool(k.args.trans_b)
    # A 1-D A is one row (1 x K), a 1-D B one column (K x 1); trans flags do not apply.
    if len(a_shape) == 1:
        a_batch, a_mat, ta = (), (1, a_shape[0]), False
    else:
        a_batch, a_mat = a_shape[:-2], a_shape[-2:]
    if len(b_shape) == 1:
        b_batch, b_mat, tb = (), (b_shape[0], 1), False
    else:
        b_batch, b_mat = b_shape[:-2], b_shape[-2:]
    M, K = (a_mat[1], a_mat[0]) if ta else a_mat
    N = b_mat[0] if tb else b_mat[1]
    nd = max(len(a_batch), len(b_batch))
    out_batch = tuple(np.broadcast_shapes((1,) * (nd - len(a_batch)) + tuple(a_batch),
                                          (1,) * (nd - len(b_batch)) + tuple(b_batch)))
    dims = _batch_dims(out_batch, a_batch, b_batch, M * K, K * N, M * N)
    # B shared by the innermost batch dim and A's matrices contiguous and untransposed: that
    # dim folds into M (Y[n*M, N] = A[n*M, K] B), one sgemm instead of n.
    folded = 1
    if dims and dims[-1][2] == 0 and dims[-1][1] == M * K and not ta:
        folded = dims.pop()[0]
        M *= folded
    loops = [dict(i=i, size=n, a=a, b=b, y=y) for i, (n, a, b, y) in enumerate(dims)]
    k.vars.update(M=M, N=N, K=K, loops=loops, folded=folded,
                  g=gemm(M, N, K, "pa", ta, "pb", tb, "py"))
