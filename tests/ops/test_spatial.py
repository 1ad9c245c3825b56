"""Conv, ConvTranspose, MaxPool, AveragePool against PyTorch CPU and closed-form checks.

Semantic decisions (checked against Caffe2 1.10's CPU operators, see the notes per test):
* pads are [heads..., tails...]: t, l, b, r in 2-d; asymmetric pads are exercised by padding
  the torch input with F.pad first.
* legacy_pad=3 (CAFFE_LEGACY_POOLING) uses Caffe's ceil rule; a last window that would
  start past the input (only possible with pad 0 and stride > kernel) is a ShapeError:
  Caffe2 reads garbage there.
* AveragePool's count_include_pad defaults to False; when True, every window's sum is
  divided by the full kernel size (also for the extra legacy window).
* Pooling takes no dilation, and its pads must be smaller than its kernel (Caffe2 enforces
  both); Conv allows any pad.
* no_bias is accepted on Conv/ConvTranspose but must agree with the inputs.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

from c2compile.errors import ArgumentError, ShapeError, UnsupportedError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, run

SETTINGS = settings(max_examples=30, deadline=None)


def f32(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def close(actual, expected, atol=1e-4):
    expected = np.asarray(expected)
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=atol)


def nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def nchw(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


def window_kwargs(draw, kernel, stride, dilation, pads):
    """Caffe2's alternative spellings of the 2-d window arguments, drawn at random."""
    kw = {}
    choices = {"kernels"}
    if kernel[0] == kernel[1]:
        choices.add("kernel")
    choices.add("kernel_hw")
    form = draw(st.sampled_from(sorted(choices)))
    if form == "kernels":
        kw["kernels"] = list(kernel)
    elif form == "kernel":
        kw["kernel"] = kernel[0]
    else:
        kw["kernel_h"], kw["kernel_w"] = kernel

    form = draw(st.sampled_from(["default", "strides", "stride", "stride_hw"]))
    if form == "default" and stride != (1, 1):
        form = "strides"
    if form == "stride" and stride[0] != stride[1]:
        form = "stride_hw"
    if form == "strides":
        kw["strides"] = list(stride)
    elif form == "stride":
        kw["stride"] = stride[0]
    elif form == "stride_hw":
        kw["stride_h"], kw["stride_w"] = stride

    if dilation is not None:
        form = draw(st.sampled_from(["default", "dilations", "dilation", "dilation_hw"]))
        if form == "default" and dilation != (1, 1):
            form = "dilations"
        if form == "dilation" and dilation[0] != dilation[1]:
            form = "dilation_hw"
        if form == "dilations":
            kw["dilations"] = list(dilation)
        elif form == "dilation":
            kw["dilation"] = dilation[0]
        elif form == "dilation_hw":
            kw["dilation_h"], kw["dilation_w"] = dilation

    form = draw(st.sampled_from(["default", "pads", "pad", "pad_tlbr"]))
    if form == "default" and any(pads):
        form = "pads"
    if form == "pad" and len(set(pads)) != 1:
        form = "pad_tlbr"
    if form == "pads":
        kw["pads"] = list(pads)
    elif form == "pad":
        kw["pad"] = pads[0]
    elif form == "pad_tlbr":
        kw["pad_t"], kw["pad_l"], kw["pad_b"], kw["pad_r"] = pads
    return kw


def raises_naming(cls, op_type, fn, *args, **kwargs):
    with pytest.raises(cls) as info:
        fn(*args, **kwargs)
    assert f"op #0 ({op_type}" in str(info.value), str(info.value)
    assert info.value.op_type == op_type
    return info.value


# ----------------------------------------------------------------------------- Conv

@SETTINGS
@given(st.data())
def test_conv2d_matches_torch(data):
    d = data.draw
    N, G = d(st.integers(1, 3)), d(st.integers(1, 3))
    Cg, Mg = d(st.integers(1, 3)), d(st.integers(1, 3))
    kernel = (d(st.integers(1, 4)), d(st.integers(1, 4)))
    stride = (d(st.integers(1, 3)), d(st.integers(1, 3)))
    dilation = (d(st.integers(1, 2)), d(st.integers(1, 2)))
    pads = tuple(d(st.integers(0, 5)) for _ in range(4))  # t, l, b, r; pad >= kernel is fine
    H, W = d(st.integers(1, 9)), d(st.integers(1, 9))
    dk = [dl * (k - 1) + 1 for dl, k in zip(dilation, kernel)]
    assume(H + pads[0] + pads[2] >= dk[0] and W + pads[1] + pads[3] >= dk[1])
    use_bias, order = d(st.booleans()), d(st.sampled_from(["NCHW", "NHWC"]))
    seed = d(st.integers(0, 2**31))
    x = f32(seed, N, G * Cg, H, W)
    w = f32(seed + 1, G * Mg, Cg, *kernel)
    b = f32(seed + 2, G * Mg)
    kw = window_kwargs(d, kernel, stride, dilation, pads)
    if G != 1 or d(st.booleans()):
        kw["group"] = G

    xt = F.pad(t64(x), (pads[1], pads[3], pads[0], pads[2]))
    expected = F.conv2d(xt, t64(w), t64(b) if use_bias else None, stride=stride,
                        dilation=dilation, groups=G).numpy()
    ins = [x, w] + ([b] if use_bias else [])
    if order == "NHWC":
        ins[0], ins[1] = nhwc(x), nhwc(w)  # filter M x kH x kW x C/group
        kw["order"] = "NHWC"
    (y,) = run("Conv", ins, **kw)
    close(nchw(y) if order == "NHWC" else y, expected)


@SETTINGS
@given(st.data())
def test_conv1d_and_3d_match_torch(data):
    d = data.draw
    nd = d(st.sampled_from([1, 3]))
    N, G, Cg, Mg = (d(st.integers(1, 2)) for _ in range(4))
    kernel = [d(st.integers(1, 3)) for _ in range(nd)]
    stride = [d(st.integers(1, 2)) for _ in range(nd)]
    dilation = [d(st.integers(1, 2)) for _ in range(nd)]
    pads = [d(st.integers(0, 2)) for _ in range(2 * nd)]
    size = [d(st.integers(1, 6)) for _ in range(nd)]
    assume(all(size[i] + pads[i] + pads[i + nd] >= dilation[i] * (kernel[i] - 1) + 1
               for i in range(nd)))
    order = d(st.sampled_from(["NCHW", "NHWC"]))
    seed = d(st.integers(0, 2**31))
    x, w, b = f32(seed, N, G * Cg, *size), f32(seed + 1, G * Mg, Cg, *kernel), f32(seed + 2, G * Mg)
    torch_pad = []
    for i in reversed(range(nd)):
        torch_pad += [pads[i], pads[i + nd]]
    conv = F.conv1d if nd == 1 else F.conv3d
    expected = conv(F.pad(t64(x), torch_pad), t64(w), t64(b), stride=stride,
                    dilation=dilation, groups=G).numpy()
    kw = dict(kernels=kernel, strides=stride, dilations=dilation, pads=pads, group=G,
              order=order)
    if order == "NHWC":
        (y,) = run("Conv", [nhwc(x), nhwc(w), b], **kw)
        y = nchw(y)
    else:
        (y,) = run("Conv", [x, w, b], **kw)
    close(y, expected)
    # the dimension-named aliases run the same op
    alias = "Conv1D" if nd == 1 else "Conv3D"
    if order == "NCHW":
        close(run(alias, [x, w, b], **kw)[0], expected)


def same_pads(size, k, s):
    """TensorFlow's SAME: ceil(size / stride) outputs, the odd pad at the tail. When the
    stride overshoots, the 'pad' is negative and Caffe2 crops, splitting it the same way
    (rounded toward zero at the head)."""
    out = -(-size // s)
    total = (out - 1) * s + k - size
    head = total // 2 if total >= 0 else -((-total) // 2)
    return out, head, total - head


def pad_or_crop(t, axis, head, tail):
    if head < 0:
        t = t.narrow(axis, -head, t.shape[axis] + head)
        head = 0
    if tail < 0:
        t = t.narrow(axis, 0, t.shape[axis] + tail)
        tail = 0
    widths = [0, 0] * (t.ndim - axis - 1) + [head, tail]
    return F.pad(t, widths)


@SETTINGS
@given(st.data())
def test_conv_legacy_valid_and_same(data):
    d = data.draw
    legacy = d(st.sampled_from([1, 2]))
    H, W = d(st.integers(1, 12)), d(st.integers(1, 12))
    kernel = (d(st.integers(1, 4)), d(st.integers(1, 4)))
    stride = (d(st.integers(1, 5)), d(st.integers(1, 5)))
    dilation = (d(st.integers(1, 2)), d(st.integers(1, 2))) if legacy == 1 else (1, 1)
    seed = d(st.integers(0, 2**31))
    x, w, b = f32(seed, 2, 3, H, W), f32(seed + 1, 4, 3, *kernel), f32(seed + 2, 4)
    kw = dict(kernel_h=kernel[0], kernel_w=kernel[1], stride_h=stride[0], stride_w=stride[1],
              dilation_h=dilation[0], dilation_w=dilation[1], legacy_pad=legacy)
    dk = [dl * (k - 1) + 1 for dl, k in zip(dilation, kernel)]
    if legacy == 1:
        if H < dk[0] or W < dk[1]:
            raises_naming(ShapeError, "Conv", run, "Conv", [x, w, b], **kw)
            return
        xt = t64(x)
        out = [(H - dk[0]) // stride[0] + 1, (W - dk[1]) // stride[1] + 1]
    else:
        oh, th, bh = same_pads(H, kernel[0], stride[0])
        ow, tw, bw = same_pads(W, kernel[1], stride[1])
        xt = pad_or_crop(pad_or_crop(t64(x), 2, th, bh), 3, tw, bw)
        out = [oh, ow]
    expected = F.conv2d(xt, t64(w), t64(b), stride=stride, dilation=dilation).numpy()
    assert list(expected.shape[2:]) == out
    (y,) = run("Conv", [x, w, b], **kw)
    close(y, expected)


def test_conv_same_with_overshooting_stride_crops_the_head():
    # Caffe2 1.10: 17 rows, kernel 1, stride 9, SAME -> pad_needed -7 -> rows 3 and 12.
    x = np.arange(17, dtype=np.float32).reshape(1, 1, 17, 1)
    (y,) = run("Conv", [x, np.ones((1, 1, 1, 1), np.float32)], kernel=1, stride=9, legacy_pad=2)
    assert y.ravel().tolist() == [3.0, 12.0]


def test_conv_legacy_pooling_pads_the_tail_with_zeros():
    # Caffe's ceil rule also applies to Conv: 6 -> 3 with kernel 3, stride 2 (tail pad 2).
    x, w = f32(0, 1, 2, 6, 6), f32(1, 3, 2, 3, 3)
    (y,) = run("Conv", [x, w], kernel=3, stride=2, legacy_pad=3)
    expected = F.conv2d(F.pad(t64(x), (0, 2, 0, 2)), t64(w), stride=2).numpy()[:, :, :3, :3]
    close(y, expected)


def test_conv_empty_batch_and_one_by_one():
    w, b = f32(1, 5, 3, 3, 3), f32(2, 5)
    (y,) = run("Conv", [np.zeros((0, 3, 6, 6), np.float32), w, b], kernel=3)
    assert y.shape == (0, 5, 4, 4) and y.dtype == np.float32
    x, w1 = f32(3, 2, 3, 4, 5), f32(4, 5, 3, 1, 1)
    (y,) = run("Conv", [x, w1, b], kernel=1, no_bias=0)
    close(y, np.einsum("nchw,mc->nmhw", x.astype(np.float64), w1[:, :, 0, 0]) + b[:, None, None])


# ----------------------------------------------------------------------------- ConvTranspose

@SETTINGS
@given(st.data())
def test_conv_transpose_matches_torch(data):
    d = data.draw
    N = d(st.integers(1, 2))
    G, Mg, Cg = (d(st.integers(1, 3)) for _ in range(3))
    H, W = d(st.integers(1, 5)), d(st.integers(1, 5))
    kernel = (d(st.integers(1, 4)), d(st.integers(1, 4)))
    stride = (d(st.integers(1, 3)), d(st.integers(1, 3)))
    adj = (d(st.integers(0, stride[0] - 1)), d(st.integers(0, stride[1] - 1)))
    pads = tuple(d(st.integers(0, 4)) for _ in range(4))
    full = [(H - 1) * stride[0] + kernel[0] + adj[0], (W - 1) * stride[1] + kernel[1] + adj[1]]
    assume(full[0] - pads[0] - pads[2] >= 1 and full[1] - pads[1] - pads[3] >= 1)
    use_bias, order = d(st.booleans()), d(st.sampled_from(["NCHW", "NHWC"]))
    seed = d(st.integers(0, 2**31))
    x, w, b = f32(seed, N, G * Mg, H, W), f32(seed + 1, G * Mg, Cg, *kernel), f32(seed + 2, G * Cg)

    # Caffe2: full transposed conv of size (in-1)*s + k + adj (the adj rows get nothing but
    # bias), cropped by pads t, l, b, r. (Caffe2 also accepts adj == stride, but then reads
    # past its column buffer: garbage; we reject it.)
    ref = F.conv_transpose2d(t64(x), t64(w), stride=stride, groups=G)
    ref = F.pad(ref, (0, adj[1], 0, adj[0]))
    ref = ref[:, :, pads[0]:full[0] - pads[2], pads[1]:full[1] - pads[3]]
    if use_bias:
        ref = ref + t64(b)[:, None, None]
    expected = ref.numpy()
    if pads[0] == pads[2] and pads[1] == pads[3]:
        # torch's own padding/output_padding say the same thing
        alt = F.conv_transpose2d(t64(x), t64(w), t64(b) if use_bias else None, stride=stride,
                                 padding=(pads[0], pads[1]), output_padding=adj, groups=G)
        np.testing.assert_allclose(alt.numpy(), expected, atol=1e-9)

    kw = window_kwargs(d, kernel, stride, None, pads)
    form = d(st.sampled_from(["default", "adjs", "adj", "adj_hw"]))
    if form == "default" and adj != (0, 0):
        form = "adjs"
    if form == "adj" and adj[0] != adj[1]:
        form = "adj_hw"
    if form == "adjs":
        kw["adjs"] = list(adj)
    elif form == "adj":
        kw["adj"] = adj[0]
    elif form == "adj_hw":
        kw["adj_h"], kw["adj_w"] = adj
    if G != 1:
        kw["group"] = G
    ins = [x, w] + ([b] if use_bias else [])
    if order == "NHWC":
        ins[0], ins[1] = nhwc(x), nhwc(w)  # filter M x kH x kW x C/group
        kw["order"] = "NHWC"
    (y,) = run("ConvTranspose", ins, **kw)
    close(nchw(y) if order == "NHWC" else y, expected)


def test_conv_transpose_legacy_valid_same_ignore_pads():
    x, w, b = f32(0, 1, 4, 3, 3), f32(1, 4, 2, 3, 3), f32(2, 2)
    expected = (F.conv_transpose2d(t64(x), t64(w), t64(b), stride=2)).numpy()
    for legacy in (1, 2):
        (y,) = run("ConvTranspose", [x, w, b], kernel=3, stride=2, legacy_pad=legacy)
        close(y, expected)
    (y,) = run("ConvTranspose", [np.zeros((0, 4, 3, 3), np.float32), w, b], kernel=3)
    assert y.shape == (0, 2, 5, 5)


# ----------------------------------------------------------------------------- pooling

def naive_pool(x, kernel, stride, head, out, mode, count_include_pad=False):
    """Caffe2's CPU pooling loop, written out plainly (NCHW, any rank): each window is
    clipped to the input; average divides by the clipped count, or by the kernel size."""
    N, C = x.shape[:2]
    y = np.empty((N, C) + tuple(out))
    for pos in np.ndindex(*out):
        sl = [slice(None), slice(None)]
        count = 1
        for j, k, s, h, n in zip(pos, kernel, stride, head, x.shape[2:]):
            lo, hi = max(j * s - h, 0), min(j * s - h + k, n)
            assert hi > lo
            sl.append(slice(lo, hi))
            count *= hi - lo
        win = x[tuple(sl)].astype(np.float64)
        axes = tuple(range(2, x.ndim))
        if mode == "max":
            y[(slice(None), slice(None)) + pos] = win.max(axis=axes)
        else:
            div = math.prod(kernel) if count_include_pad else count
            y[(slice(None), slice(None)) + pos] = win.sum(axis=axes) / div
    return y


@SETTINGS
@given(st.data())
def test_pool2d_matches_torch(data):
    d = data.draw
    mode = d(st.sampled_from(["MaxPool", "AveragePool"]))
    N, C = d(st.integers(1, 3)), d(st.integers(1, 3))
    H, W = d(st.integers(1, 9)), d(st.integers(1, 9))
    kernel = (d(st.integers(1, 4)), d(st.integers(1, 4)))
    stride = (d(st.integers(1, 3)), d(st.integers(1, 3)))
    # Caffe2's pooling requires pad < kernel on every side
    pads = (d(st.integers(0, kernel[0] - 1)), d(st.integers(0, kernel[1] - 1)),
            d(st.integers(0, kernel[0] - 1)), d(st.integers(0, kernel[1] - 1)))
    assume(H + pads[0] + pads[2] >= kernel[0] and W + pads[1] + pads[3] >= kernel[1])
    order = d(st.sampled_from(["NCHW", "NHWC"]))
    cip = d(st.sampled_from([None, False, True]))
    seed = d(st.integers(0, 2**31))
    x = f32(seed, N, C, H, W)
    torch_pad = (pads[1], pads[3], pads[0], pads[2])
    if mode == "MaxPool":
        expected = F.max_pool2d(F.pad(t64(x), torch_pad, value=-math.inf), kernel, stride)
    else:
        total = F.avg_pool2d(F.pad(t64(x), torch_pad), kernel, stride, divisor_override=1)
        if cip:
            count = math.prod(kernel)
        else:  # padded positions do not count (Caffe2 1.x default)
            count = F.avg_pool2d(F.pad(torch.ones((1, 1, H, W), dtype=torch.float64), torch_pad),
                                 kernel, stride, divisor_override=1)
        expected = total / count
    expected = expected.numpy()
    kw = window_kwargs(d, kernel, stride, None, pads)
    if mode == "AveragePool" and cip is not None:
        kw["count_include_pad"] = cip
    if order == "NHWC":
        (y,) = run(mode, [nhwc(x)], order="NHWC", **kw)
        y = nchw(y)
    else:
        (y,) = run(mode, [x], **kw)
    close(y, expected, atol=1e-5)


def legacy_out(size, k, s, p):
    """Caffe's pooling size: ceil((size + 2p - k) / s) + 1, minus one if the last window
    would start in the padding."""
    out = -(-(size + 2 * p - k) // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


@SETTINGS
@given(st.data())
def test_pool_caffe_legacy_padding(data):
    d = data.draw
    mode = d(st.sampled_from(["MaxPool", "AveragePool"]))
    H, W = d(st.integers(1, 12)), d(st.integers(1, 12))
    k, s = d(st.integers(1, 4)), d(st.integers(1, 3))
    p = d(st.integers(0, k - 1))
    cip = d(st.booleans())
    order = d(st.sampled_from(["NCHW", "NHWC"]))
    x = f32(d(st.integers(0, 2**31)), 2, 3, H, W)
    kw = dict(kernel=k, stride=s, pad=p, legacy_pad=3)
    if mode == "AveragePool":
        kw["count_include_pad"] = cip
    out = [legacy_out(H, k, s, p), legacy_out(W, k, s, p)]
    if any(o < 1 for o in out):
        # e.g. size 1, kernel 2: ceil(-1 / 1 + 1) = 0; Caffe2 returns an empty output
        raises_naming(ShapeError, mode, run, mode, [x], **kw)
        return
    if any((o - 1) * s - p >= n for o, n in zip(out, (H, W))):
        # the last window would pool nothing: Caffe2 reads garbage, we refuse
        raises_naming(ShapeError, mode, run, mode, [x], **kw)
        return
    if order == "NHWC":
        (y,) = run(mode, [nhwc(x)], order="NHWC", **kw)
        y = nchw(y)
    else:
        (y,) = run(mode, [x], **kw)
    assert list(y.shape[2:]) == out
    expected = naive_pool(x, (k, k), (s, s), (p, p), out, "max" if mode == "MaxPool" else "avg",
                          count_include_pad=cip)
    close(y, expected, atol=1e-5)
    if 2 * p <= k and (H + 2 * p >= k and W + 2 * p >= k):
        # torch's ceil_mode agrees (its average divides by the window clipped to the padded
        # input, which differs from Caffe2's full-kernel divisor, so only without cip)
        if mode == "MaxPool":
            ref = F.max_pool2d(t64(x), k, s, padding=p, ceil_mode=True)
        elif not cip:
            ref = F.avg_pool2d(t64(x), k, s, padding=p, ceil_mode=True, count_include_pad=False)
        else:
            return
        close(y, ref.numpy(), atol=1e-5)


def test_squeezenet_pool1_size():
    # SqueezeNet 1.1 pool1 at 227x227 input: MaxPool kernel 3 stride 2 pad 0 legacy_pad 3.
    x = f32(0, 1, 64, 113, 113)
    (y,) = run("MaxPool", [x], kernel=3, stride=2, pad=0, order="NCHW", legacy_pad=3)
    assert y.shape == (1, 64, 56, 56)
    close(y, F.max_pool2d(t64(x), 3, 2, ceil_mode=True).numpy(), atol=0)
    # 27 -> 13 (pool5) is where ceil and floor part: (27 - 3) / 2 + 1 = 13 either way,
    # but 56 -> 28 (pool3) needs the ceil: floor would give 27
    (y,) = run("MaxPool", [f32(1, 1, 128, 56, 56)], kernel=3, stride=2, pad=0, legacy_pad=3)
    assert y.shape == (1, 128, 28, 28)


@SETTINGS
@given(st.data())
def test_global_pooling(data):
    d = data.draw
    mode = d(st.sampled_from(["MaxPool", "AveragePool"]))
    nd = d(st.integers(1, 3))
    shape = [d(st.integers(1, 3)), d(st.integers(1, 4))] + [d(st.integers(1, 6)) for _ in range(nd)]
    x = f32(d(st.integers(0, 2**31)), *shape)
    axes = tuple(range(2, 2 + nd))
    expected = (t64(x).amax(dim=axes, keepdim=True) if mode == "MaxPool"
                else t64(x).mean(dim=axes, keepdim=True)).numpy()
    kw = dict(global_pooling=True)
    if nd == 2 and d(st.booleans()):  # as SqueezeNet's pool10 writes it
        kw.update(kernel=0, stride=1, pad=0, legacy_pad=3)
    if d(st.booleans()):
        (y,) = run(mode, [nhwc(x)], order="NHWC", **kw)
        y = nchw(y)
    else:
        (y,) = run(mode, [x], **kw)
    close(y, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("kw", [dict(kernel=3), dict(kernels=[5, 5, 5]), dict(kernels=[2, 1]),
                                dict(kernel_h=7, kernel_w=1)])
def test_global_pooling_ignores_the_kernel(mode, kw):
    # Caffe2 overwrites the kernel with the input's spatial size whatever kernel/kernels say,
    # and Caffe2's own pooling_test (test_global_pooling_3d) passes arbitrary kernels:
    # real Caffe2 1.10 gives (2, 3, 1, 1, 1) = the global max for kernels=[5, 5, 5] or kernel=3
    # on a (2, 3, 4, 4, 4) input.
    x = f32(7, 2, 3, 4, 4, 4)
    (y,) = run(mode, [x], global_pooling=True, **kw)
    axes = (2, 3, 4)
    expected = x.max(axis=axes, keepdims=True) if mode == "MaxPool" else \
        x.astype(np.float64).mean(axis=axes, keepdims=True)
    close(y, expected, atol=1e-6)
    (t,) = infer(mode, [TensorType(x.shape)], global_pooling=True, **kw)
    assert t.shape == (2, 3, 1, 1, 1)


def test_cudnn_and_gradient_only_arguments_are_accepted():
    # Caffe2's conv_test passes cuDNN's force_algo_fwd/dgrad/wgrad (engine hints: the result
    # is the same) and conv_transpose_test passes no_gradient_to_input (read by
    # ConvTransposeGradient only); neither changes the forward output.
    x, w = f32(0, 1, 2, 5, 5), f32(1, 3, 2, 3, 3)
    (ref,) = run("Conv", [x, w], kernel=3)
    (y,) = run("Conv", [x, w], kernel=3, force_algo_fwd=1, force_algo_dgrad=-1,
               force_algo_wgrad=0)
    close(y, ref, atol=0)
    wt = f32(2, 2, 3, 3, 3)
    (ref,) = run("ConvTranspose", [x, wt], kernel=3)
    (y,) = run("ConvTranspose", [x, wt], kernel=3, no_gradient_to_input=1, force_algo_fwd=2)
    close(y, ref, atol=0)


def test_pool_1d_3d_and_aliases():
    x = f32(0, 2, 3, 5, 6, 7)
    (y,) = run("MaxPool3D", [x], kernels=[2, 3, 2], strides=[1, 2, 2], pads=[1, 0, 1, 0, 2, 1])
    ref = F.max_pool3d(F.pad(t64(x), (1, 1, 0, 2, 1, 0), value=-math.inf), (2, 3, 2), (1, 2, 2))
    close(y, ref.numpy(), atol=0)
    x = f32(1, 2, 3, 9)
    (y,) = run("AveragePool1D", [x], kernels=[3], strides=[2], pads=[1, 2])
    close(y, naive_pool(x, (3,), (2,), (1,), (5,), "avg"), atol=1e-6)


@pytest.mark.parametrize("mode", ["MaxPool", "AveragePool"])
def test_pool_large_kernel(mode):
    # kernels of more than 64 taps take a sliding-window reduction instead of a slice loop
    x = f32(5, 2, 3, 20, 17)
    kw = dict(kernel_h=9, kernel_w=8, stride_h=3, stride_w=2, pad_t=4, pad_l=1, pad_b=2, pad_r=7)
    (y,) = run(mode, [x], **kw)
    out = ((20 + 6 - 9) // 3 + 1, (17 + 8 - 8) // 2 + 1)
    expected = naive_pool(x, (9, 8), (3, 2), (4, 1), out, "max" if mode == "MaxPool" else "avg")
    close(y, expected, atol=1e-5)
    (y,) = run(mode, [nhwc(x)], order="NHWC", **kw)
    close(nchw(y), expected, atol=1e-5)


def test_pool_closed_form_values():
    # The numbers Caffe2 1.10 prints for a 5x5 ramp (checked by hand as well: the corner
    # window of a 3x3 pad-1 average covers 0, 1, 5, 6).
    a = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    (y,) = run("AveragePool", [a], kernel=3, pad=1)
    assert y[0, 0, 0, :3].tolist() == [3.0, 3.5, 4.5]
    (y,) = run("AveragePool", [a], kernel=3, pad=1, count_include_pad=True)
    np.testing.assert_allclose(y[0, 0, 0, :2], [12 / 9, 21 / 9], rtol=1e-6)
    (y,) = run("AveragePool", [a], kernel=2, stride=2, legacy_pad=3, count_include_pad=True)
    assert y[0, 0, 0].tolist() == [3.0, 5.0, 3.25]  # last column: (4 + 9) / 4
    (y,) = run("MaxPool", [a], kernel=2, stride=2, legacy_pad=2)
    assert y[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    (y,) = run("MaxPool", [np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)],
               kernel=3, stride=2, legacy_pad=3)
    assert y.ravel().tolist() == [3.0]  # kernel larger than the input: ceil gives one window


# ----------------------------------------------------------------------------- shapes

def test_infer_matches_and_handles_unknown():
    T = TensorType
    assert infer("Conv", [T((2, 3, 10, 12)), T((8, 3, 3, 3)), T((8,))], kernel=3, stride=2,
                 pad=1)[0].shape == (2, 8, 5, 6)
    assert infer("Conv", [T(None), T((8, 3, 3, 3))], kernel=3)[0].shape is None
    assert infer("Conv", [T((2, 3, 10, 12)), T(None)], kernel=3)[0].shape is None
    assert infer("MaxPool", [T((1, 64, 113, 113))], kernel=3, stride=2, legacy_pad=3)[0].shape == \
        (1, 64, 56, 56)
    pooled = infer("AveragePool", [T((1, 13, 13, 1000))], global_pooling=1, order="NHWC")
    assert pooled[0].shape == (1, 1, 1, 1000)
    assert infer("ConvTranspose", [T((1, 4, 3, 3)), T((4, 2, 3, 3))], kernel=3, strides=[2, 3],
                 adjs=[1, 0], pads=[0, 1, 2, 0])[0].shape == (1, 2, 6, 8)
    assert infer("MaxPool", [T(None)], kernel=2)[0].shape is None


X4 = f32(0, 1, 2, 5, 5)
W4 = f32(1, 3, 2, 3, 3)


@pytest.mark.parametrize("op_type, inputs, kwargs, cls, words", [
    # arguments
    ("Conv", [X4, W4], {}, ArgumentError, "kernel size is required"),
    ("Conv", [X4, W4], dict(kernel_h=3), ArgumentError, "without kernel_w"),
    ("Conv", [X4, W4], dict(kernel=3, kernels=[3, 3]), ArgumentError, "give only one"),
    ("Conv", [X4, W4], dict(kernel=3, stride_h=2), ArgumentError, "without stride_w"),
    ("Conv", [X4, W4], dict(kernel=3, pad=1, pads=[1, 1, 1, 1]), ArgumentError, "give only one"),
    ("Conv", [X4, W4], dict(kernel=3, pad_t=1, pad_l=1), ArgumentError, "without pad_b"),
    ("Conv", [X4, W4], dict(kernel=3, stride=0), ArgumentError, "stride"),
    ("Conv", [X4, W4], dict(kernel=3, pad=-1), ArgumentError, ">= 0"),
    ("Conv", [X4, W4], dict(kernel=3, dilation=0), ArgumentError, "dilation"),
    ("Conv", [X4, W4], dict(kernel=3, legacy_pad=5), ArgumentError, "legacy_pad=5"),
    ("Conv", [X4, W4], dict(kernel=3, pad=1, legacy_pad=2), ArgumentError, "computes the pads"),
    ("Conv", [X4, W4], dict(kernel=3, dilation=2, legacy_pad=2), ArgumentError, "SAME"),
    ("Conv", [X4, W4], dict(kernel=3, dilation=2, legacy_pad=3), ArgumentError, "legacy_pad=3"),
    ("Conv", [X4, W4], dict(kernel=3, order="CHWN"), ArgumentError, "order"),
    ("Conv", [X4, W4], dict(kernel=3, global_pooling=1), ArgumentError, "pooling ops only"),
    ("Conv", [X4, W4], dict(kernels=[3], strides=[1, 1]), ArgumentError, "strides"),
    ("Conv", [X4, W4, np.zeros(3, np.float32)], dict(kernel=3, no_bias=1), ArgumentError,
     "no_bias"),
    ("Conv", [X4, W4], dict(kernel=3, group=0), ArgumentError, "group"),
    ("Conv", [X4, W4], dict(kernel=3, bogus=1), ArgumentError, "unknown argument"),
    ("MaxPool", [X4], dict(kernel=2, dilation=2), ArgumentError, "dilation"),
    ("MaxPool", [X4], dict(kernel=2, pad=2), ArgumentError, "smaller than the kernel"),
    ("MaxPool", [X4], dict(kernel=2, group=2), ArgumentError, "group"),
    ("AveragePool", [X4], dict(global_pooling=1, stride=2), ArgumentError, "global_pooling"),
    ("MaxPool", [X4], dict(kernel=3, pads=[1, 1, 0, 0], legacy_pad=3), ArgumentError,
     "symmetric"),
    ("MaxPool", [X4], dict(), ArgumentError, "kernel size is required"),
    ("ConvTranspose", [X4, f32(2, 2, 2, 3, 3)], dict(kernel=3, dilation=2), ArgumentError,
     "unknown argument"),
    ("ConvTranspose", [X4, f32(2, 2, 2, 3, 3)], dict(kernel=3, stride=2, adj=3), ArgumentError,
     "adj"),
    ("ConvTranspose", [X4, f32(2, 2, 2, 3, 3)], dict(kernel=3, stride=2, adj=2), ArgumentError,
     "smaller than stride"),
    ("ConvTranspose", [X4, f32(2, 2, 2, 3, 3)], dict(kernel=3, legacy_pad=3), ArgumentError,
     "CAFFE_LEGACY_POOLING"),
    # shapes
    ("Conv", [X4, f32(1, 3, 2, 7, 7)], dict(kernel=7), ShapeError, "does not fit"),
    ("Conv", [f32(0, 1, 2, 2, 2), W4], dict(kernel=3, stride=2, legacy_pad=1), ShapeError,
     "does not fit"),
    ("Conv", [X4, f32(1, 3, 3, 3, 3)], dict(kernel=3), ShapeError, "channels"),
    ("Conv", [f32(0, 1, 4, 5, 5), f32(1, 3, 2, 3, 3)], dict(kernel=3, group=2), ShapeError,
     "group=2"),
    ("Conv", [f32(0, 1, 3, 5, 5), f32(1, 3, 1, 3, 3)], dict(kernel=3, group=2), ShapeError,
     "group=2"),
    ("Conv", [X4, W4], dict(kernel=2), ShapeError, "kernel argument says"),
    ("Conv", [X4, W4, np.zeros(4, np.float32)], dict(kernel=3), ShapeError, "bias"),
    ("Conv", [X4, W4, np.zeros((3, 1), np.float32)], dict(kernel=3), ShapeError, "bias"),
    ("Conv", [f32(0, 2, 5, 5), W4], dict(kernel=3), ShapeError, "4-d input"),
    ("Conv", [X4, f32(1, 3, 2, 3)], dict(kernel=3), ShapeError, "filter"),
    ("Conv", [X4.astype(np.float64), W4.astype(np.float64)], dict(kernel=3), ShapeError,
     "float32"),
    ("Conv", [np.zeros((1, 2, 0, 5), np.float32), W4], dict(kernel=1), ShapeError, ">= 1"),
    ("MaxPool", [f32(0, 1, 1, 5, 5)], dict(kernel=1, stride=3, legacy_pad=3), ShapeError,
     "pool nothing"),
    ("MaxPool", [f32(0, 1, 1, 5, 5)], dict(kernel=6), ShapeError, "does not fit"),
    ("AveragePool", [f32(0, 1, 5, 5)], dict(kernel=2), ShapeError, "4-d input"),
    ("AveragePool", [X4.astype(np.int32)], dict(kernel=2), ShapeError, "float32"),
    ("ConvTranspose", [X4, f32(2, 2, 2, 3, 3)], dict(kernel=3, pad=4), ShapeError, "crop away"),
    ("ConvTranspose", [X4, f32(2, 3, 2, 3, 3)], dict(kernel=3), ShapeError, "first dimension"),
    ("ConvTranspose", [X4, f32(2, 2, 2, 3, 3), np.zeros(3, np.float32)], dict(kernel=3),
     ShapeError, "bias"),
    ("ConvTranspose", [f32(0, 1, 2, 5), f32(2, 2, 2, 3)], dict(kernels=[3]), ShapeError, "2-d"),
])
def test_bad_inputs_name_the_op(op_type, inputs, kwargs, cls, words):
    err = raises_naming(cls, op_type, run, op_type, inputs, **kwargs)
    assert words in str(err), str(err)


def test_unsupported_is_never_raised_for_valid_rank():
    # 4 spatial axes: Caffe2 has no such pooling either; it is a shape error naming the op
    raises_naming(ShapeError, "MaxPool", run, "MaxPool", [f32(0, 1, 1, 2, 2, 2, 2)],
                  kernels=[1, 1, 1, 1])
    assert not issubclass(ShapeError, UnsupportedError)


@pytest.mark.parametrize("op_type, inputs, kwargs", [
    ("Conv", ["x", "w"], dict(kernel=1)),
    ("Conv", ["x", "w", "b"], dict(kernel=1)),
    ("ConvTranspose", ["x", "w"], dict(kernel=1)),
    ("MaxPool", ["x"], dict(kernel=1)),
    ("AveragePool", ["x"], dict(kernel=1)),
])
def test_no_in_place(op_type, inputs, kwargs):
    # None of these allows in-place in Caffe2's schema (output shapes differ in general).
    arrays = {"x": f32(0, 1, 2, 3, 3), "w": f32(1, 2, 2, 1, 1), "b": f32(2, 2)}
    for clobbered in inputs:
        with pytest.raises(ArgumentError) as info:
            run(op_type, [arrays[n] for n in inputs], input_names=inputs,
                outputs=[clobbered], **kwargs)
        assert f"op #0 ({op_type}" in str(info.value)


# ----------------------------------------------------------------------------- SqueezeNet speed

SQUEEZE_FIRES = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256),
                 (64, 256)]


def test_squeezenet_spatial_ops_are_fast():
    """SqueezeNet 1.1 at 227x227 through these references (Relu/Concat done inline)."""
    rng = np.random.default_rng(0)

    def weights(m, c, k):
        w = rng.standard_normal((m, c, k, k)) * (2.0 / (c * k * k)) ** 0.5
        return w.astype(np.float32), np.zeros(m, np.float32)

    x = rng.standard_normal((1, 3, 227, 227)).astype(np.float32)
    start = time.perf_counter()
    w, b = weights(64, 3, 3)
    (x,) = run("Conv", [x, w, b], stride=2, pad=0, kernel=3)
    x = np.maximum(x, 0)
    (x,) = run("MaxPool", [x], stride=2, pad=0, kernel=3, order="NCHW", legacy_pad=3)
    for i, (sq, ex) in enumerate(SQUEEZE_FIRES):
        w, b = weights(sq, x.shape[1], 1)
        (s,) = run("Conv", [x, w, b], stride=1, pad=0, kernel=1)
        s = np.maximum(s, 0)
        w, b = weights(ex, sq, 1)
        (e1,) = run("Conv", [s, w, b], stride=1, pad=0, kernel=1)
        w, b = weights(ex, sq, 3)
        (e3,) = run("Conv", [s, w, b], stride=1, pad=1, kernel=3)
        x = np.concatenate([np.maximum(e1, 0), np.maximum(e3, 0)], axis=1)
        if i in (1, 3):
            (x,) = run("MaxPool", [x], stride=2, pad=0, kernel=3, order="NCHW", legacy_pad=3)
    w, b = weights(1000, 512, 1)
    (x,) = run("Conv", [x, w, b], stride=1, pad=0, kernel=1)
    x = np.maximum(x, 0)
    (x,) = run("AveragePool", [x], stride=1, pad=0, kernel=0, order="NCHW", legacy_pad=3,
               global_pooling=1)
    elapsed = time.perf_counter() - start
    assert x.shape == (1, 1000, 1, 1)
    assert elapsed < 3.0, f"SqueezeNet's spatial ops took {elapsed:.2f} s"


# ----------------------------------------------------------------------------- real Caffe2

CAFFE2_PYTHON = os.environ.get("C2COMPILE_CAFFE2_PYTHON")  # a Python whose caffe2 imports

CAFFE2_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from caffe2.python import core, workspace
    cases = json.load(open(sys.argv[1]))
    data = np.load(sys.argv[2])
    out, errors = {}, {}
    for i, (op_type, n_in, kw) in enumerate(cases):
        names = []
        for j in range(n_in):
            workspace.FeedBlob("in%d" % j, data["c%d_%d" % (i, j)])
            names.append("in%d" % j)
        try:
            workspace.RunOperatorOnce(core.CreateOperator(op_type, names, ["y"], **kw))
            out["c%d" % i] = workspace.FetchBlob("y")
        except Exception as e:
            errors["c%d" % i] = str(e).splitlines()[0]
    np.savez(sys.argv[3], **out)
    json.dump(errors, open(sys.argv[3] + ".errors.json", "w"))
""")


@pytest.mark.skipif(not CAFFE2_PYTHON, reason="set C2COMPILE_CAFFE2_PYTHON to a Python with "
                                              "Caffe2 (e.g. torch 1.10.2 on Python 3.6)")
def test_against_real_caffe2(tmp_path):
    rng = np.random.default_rng(1234)
    cases, arrays = [], {}

    def add(op_type, ins, **kw):
        for j, a in enumerate(ins):
            arrays[f"c{len(cases)}_{j}"] = a
        cases.append((op_type, len(ins), kw))

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    for _ in range(40):
        order = str(rng.choice(["NCHW", "NHWC"]))
        G, Cg, Mg = (int(v) for v in rng.integers(1, 3, size=3))
        k = [int(v) for v in rng.integers(1, 4, size=2)]
        s = [int(v) for v in rng.integers(1, 3, size=2)]
        dl = [int(v) for v in rng.integers(1, 3, size=2)]
        p = [int(v) for v in rng.integers(0, 4, size=4)]
        H, W = (int(v) for v in rng.integers(4, 9, size=2))
        legacy = int(rng.choice([0, 0, 1, 2, 3]))
        kw = dict(kernels=k, strides=s, order=order, group=G, legacy_pad=legacy)
        if legacy in (0, 1):
            kw["dilations"] = dl
        if legacy in (0, 3):
            kw["pads"] = p if legacy == 0 else [p[0], p[1], p[0], p[1]]
        x, w = r(2, G * Cg, H, W), r(G * Mg, Cg, *k)
        if order == "NHWC":
            x, w = nhwc(x), nhwc(w)
        add("Conv", [x, w, r(G * Mg)], **kw)
        kp = [int(v) for v in rng.integers(1, 4, size=2)]
        pp = [int(rng.integers(0, kp[0])), int(rng.integers(0, kp[1]))]
        kw = dict(kernels=kp, strides=s, order=order, legacy_pad=legacy)
        if legacy in (0, 3):
            kw["pads"] = pp + pp
        x = r(2, 3, H, W)
        x = nhwc(x) if order == "NHWC" else x
        add("MaxPool", [x], **kw)
        add("AveragePool", [x], count_include_pad=bool(rng.integers(0, 2)), **kw)
        adj = [int(rng.integers(0, s[0])), int(rng.integers(0, s[1]))]
        x, w = r(2, G * Mg, 3, 4), r(G * Mg, Cg, *k)
        if order == "NHWC":
            x, w = nhwc(x), nhwc(w)
        add("ConvTranspose", [x, w, r(G * Cg)], kernels=k, strides=s, adjs=adj, order=order,
            group=G, pads=[min(v, 1) for v in p])

    ours, keep = {}, []
    for i, (op_type, n_in, kw) in enumerate(cases):
        try:
            (ours[i],) = run(op_type, [arrays[f"c{i}_{j}"] for j in range(n_in)], **kw)
            keep.append(i)
        except ShapeError:
            pass  # e.g. an empty legacy window: Caffe2's answer is garbage there
    assert len(keep) > len(cases) // 2
    json.dump([cases[i] for i in keep], open(tmp_path / "cases.json", "w"))
    np.savez(tmp_path / "in.npz", **{f"c{n}_{j}": arrays[f"c{i}_{j}"]
                                     for n, i in enumerate(keep) for j in range(cases[i][1])})
    (tmp_path / "run.py").write_text(CAFFE2_SCRIPT)
    proc = subprocess.run([CAFFE2_PYTHON, str(tmp_path / "run.py"), str(tmp_path / "cases.json"),
                           str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    errors = json.load(open(str(tmp_path / "out.npz") + ".errors.json"))
    assert not errors, {k: (cases[keep[int(k[1:])]], v) for k, v in errors.items()}
    for n, i in enumerate(keep):
        np.testing.assert_allclose(ours[i], theirs[f"c{n}"], rtol=1e-4, atol=1e-4,
                                   err_msg=str(cases[i]))
