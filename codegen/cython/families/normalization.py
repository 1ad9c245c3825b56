"""LRN and SpatialBN kernels (template: normalization.pyx.j2). Softmax lives elsewhere.

Both follow their references' arithmetic: sums and the per-element math in double, one
rounding to float32 at the end; float arguments are written as the exact double the
reference uses (the float32 epsilon/momentum rounded as the reference rounds them).
"""
from __future__ import annotations

import math

import numpy as np

from c2compile.codegen.cython.lowering import KernelSpec, Unsupported, kernel
from c2compile.ops.normalization import _bn_check, _bn_check_sums, _lrn_check
from c2compile.ops.schema import TensorType


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


@kernel("LRN", template="normalization.pyx.j2", macro="lrn")
def lrn(k: KernelSpec) -> None:
    _float32_only(k)
    order = _lrn_check(k.op, _tt(k.ins[0]))
    a = k.args
    v = _layout(k.ins[0].shape, order)
    v.update(size=a.size, pre=(a.size - 1) // 2, bias=repr(float(a.bias)),
             alpha_n=repr(float(a.alpha) / a.size), beta=repr(-float(a.beta)),
             scale_out=len(k.outs) == 2)
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
