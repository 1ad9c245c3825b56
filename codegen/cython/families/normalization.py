"""LRN, SpatialBN and the gradients LRNGradient, SpatialBNGradient, SoftmaxGradient
(template: normalization.pyx.j2). The Softmax kernel lives with the reductions.

All follow their references' arithmetic: sums and the per-element math in double, one
rounding to float32 at the end; float arguments are written as the exact double the
reference uses (the float32 epsilon/momentum rounded as the reference rounds them). Long
contiguous sums run in LANES independent partial sums so that gcc vectorises them (it may
not reorder one accumulator without -ffast-math).
"""
from __future__ import annotations

import math

import numpy as np

from c2compile.codegen.cython.lowering import KernelSpec, Unsupported, kernel
from c2compile.ops.normalization import (_bn_check, _bn_check_sums, _bn_gradient_check,
                                         _lrn_check, _softmax_check)
from c2compile.ops.schema import TensorType

LANES = 8


def _lanes(n: int) -> int:
    """Partial sums for a contiguous run of n (0: too short to be worth it)."""
    return LANES if n >= 2 * LANES else 0


def _tt(b) -> TensorType:
    return TensorType(b.shape, b.dtype)


def _float32_only(k: KernelSpec) -> None:
    for b in k.ins + k.outs:
        if b.ctype != "float":
            raise Unsupported(f"{k.op.type}: float32 only (got {b.dtype})")


def _layout(shape, order: str) -> dict:
    """N, C and the pixels per (image, channel) of an NCHW/NHWC tensor."""
    nhwc = order == "NHWC"
    C = shape[-1] if nhwc else shape[1]
    P = math.prod(shape[1:-1] if nhwc else shape[2:])
    return dict(N=shape[0], C=C, P=P, nhwc=nhwc)


def _lrn_vars(k: KernelSpec) -> dict:
    """Layout of X (input 0) and the LRN constants, shared by LRN and LRNGradient."""
    _float32_only(k)
    order = _lrn_check(k.op, _tt(k.ins[0]))
    a = k.args
    v = _layout(k.ins[0].shape, order)
    v.update(size=a.size, pre=(a.size - 1) // 2, bias=repr(float(a.bias)),
             alpha_n=repr(float(a.alpha) / a.size), beta=repr(-float(a.beta)))
    return v


@kernel("LRN", template="normalization.pyx.j2", macro="lrn")
def lrn(k: KernelSpec) -> None:
    v = _lrn_vars(k)
    v.update(scale_out=len(k.outs) == 2)
    if not v["nhwc"]:
        k.scratch_buf(v["P"], np.float64)  # window sums of one channel plane
    k.vars.update(v)


@kernel("SpatialBN", template="normalization.pyx.j2", macro="spatial_bn")
def spatial_bn(k: KernelSpec) -> None:
    _float32_only(k)
    order, C = _bn_check(k.op, *(_tt(b) for b in k.ins[:5]))
    _bn_check_sums(k.op, order, C, _tt(k.ins[0]), [_tt(b) for b in k.ins[5:]])
    a = k.args
    v = _layout(k.ins[0].shape, order)
    v.update(is_test=bool(a.is_test), eps=repr(float(np.float64(np.float32(a.epsilon)))),
             momentum=repr(float(np.float64(np.float32(a.momentum)))),
             # a running statistic whose size is not C starts from zeros (as the reference)
             mean_ok=k.ins[3].size == C, var_ok=k.ins[4].size == C,
             num_batches=1 if a.is_test else int(a.num_batches))
    v["one_minus_m"] = repr(1 - float(v["momentum"]))
    if v["nhwc"]:
        k.scratch_buf(2 * C, np.float64)  # per-channel sums, then the affine a and b
    k.vars.update(v)


# ----------------------------------------------------------------------------- gradients

@kernel("SoftmaxGradient", template="normalization.pyx.j2", macro="softmax_gradient")
def softmax_gradient(k: KernelSpec) -> None:
    """Rows of Y / dY flattened to N x D at `axis`."""
    _float32_only(k)
    y = k.ins[0]
    axis = _softmax_check(k.op, _tt(y))
    D = math.prod(y.shape[axis:])
    k.vars.update(N=y.size // D if D else 0, D=D, lanes=_lanes(D))


@kernel("LRNGradient", template="normalization.pyx.j2", macro="lrn_gradient")
def lrn_gradient(k: KernelSpec) -> None:
    v = _lrn_vars(k)
    a = k.args
    v.update(ratio=repr(2.0 * float(a.alpha) * float(a.beta) / a.size))
    plane = v["C"] if v["nhwc"] else v["C"] * v["P"]
    k.scratch_buf(plane, np.float64)  # the scale of one image (NCHW) / pixel (NHWC)
    k.scratch_buf(plane, np.float64)  # dY * Y / scale, the same
    if not v["nhwc"]:
        k.scratch_buf(v["P"], np.float64)  # window sums of one channel plane
    k.vars.update(v)


@kernel("SpatialBNGradient", template="normalization.pyx.j2", macro="spatial_bn_gradient")
def spatial_bn_gradient(k: KernelSpec) -> None:
    _float32_only(k)
    order, C = _bn_gradient_check(k.op, *(_tt(b) for b in k.ins[:5]),
                                  [_tt(b) for b in k.ins[5:]])
    v = _layout(k.ins[0].shape, order)
    n = v["N"] * v["P"]
    v.update(n=n, num_batches=int(k.args.num_batches), lanes=_lanes(v["P"]))
    if v["nhwc"]:
        k.scratch_buf(5 * C, np.float64)  # per channel: the two sums, then the dX affine
    elif v["num_batches"] == 1:
        k.scratch_buf(2 * v["P"], np.float64)  # the two sums of one channel, per position
    k.vars.update(v)
