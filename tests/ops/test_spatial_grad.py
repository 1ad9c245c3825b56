"""Gradients of Conv, ConvTranspose, MaxPool, AveragePool (and the 1D/2D/3D aliases).

The rules and gradient ops are checked against PyTorch autograd (float64) and finite
differences on drawn geometries, and the op names/inputs/outputs against what Caffe2 1.10's
gradient makers emit (pinned literally below, from `core.GradientRegistry.GetGradientForOp`
in real Caffe2). Semantics pinned from Caffe2 1.10's CPU kernels:
* ConvGradient / ConvTransposeGradient read [X, W, dY] and write [dW, db, dX]; a forward op
  without a bias input gets no_bias=1 and writes [dW, dX]; no_gradient_to_input=1 (read by
  both rules) leaves dX out.
* MaxPoolGradient reads [X, Y, dY]: every input equal to its window's max gets that
  window's dY (ties all get it, not only the first).
* AveragePoolGradient spreads dY with the forward's own factor: 1 / (window positions
  inside the input), or 1 / kernel size with count_include_pad (also for the extra legacy
  window).
Deviation: where the forward op already says no_bias, Caffe2's gradient op carries the
argument twice (its own no_bias=1, then the copied one); ours carries it once.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

import c2compile.hypothesis_test_util as hu
from c2compile import core
from c2compile.errors import ArgumentError, C2Error, ShapeError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import check_gradient, gradient_ops, infer, run, run_gradient

SETTINGS = settings(max_examples=20, deadline=None)
CONV_TYPES = ["Conv", "Conv1D", "Conv2D", "Conv3D"]
POOL_TYPES = [p + s for p in ("MaxPool", "AveragePool") for s in ("", "1D", "2D", "3D")]


def randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def distinct(seed, *shape, gap=0.05):
    """Values at least `gap` apart: no max-pool tie within a finite-difference step."""
    n = int(np.prod(shape))
    v = np.random.default_rng(seed).permutation(n) - n / 2
    return (v * gap).reshape(shape).astype(np.float32)


def to_nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def cf(t):
    """torch NHWC tensor -> NCHW view; and back with `cl`."""
    return t.movedim(-1, 1)


def cl(t):
    return t.movedim(1, -1)


def arg_names(op):
    return [a.name for a in op.arg]


# -------------------------------------------------------------- structure (pinned from Caffe2 1.10)

@pytest.mark.parametrize("op_type", CONV_TYPES + ["ConvTranspose"])
def test_conv_gradient_ops_as_caffe2_emits_them(op_type):
    gtype = op_type + "Gradient"
    kw = dict(kernels=[3] * (3 if op_type == "Conv3D" else 1 if op_type == "Conv1D" else 2))

    fwd, ops, g_in = gradient_ops(op_type, ["X", "W", "b"], ["Y"], **kw)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == \
        [(gtype, ["X", "W", "Y_grad"], ["W_grad", "b_grad", "X_grad"])]
    assert g_in == ["X_grad", "W_grad", "b_grad"]
    assert arg_names(ops[0]) == ["kernels"] and ops[0].is_gradient_op

    _, ops, g_in = gradient_ops(op_type, ["X", "W"], ["Y"], **kw)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == \
        [(gtype, ["X", "W", "Y_grad"], ["W_grad", "X_grad"])]
    assert g_in == ["X_grad", "W_grad"]
    assert arg_names(ops[0]) == ["no_bias", "kernels"] and ops[0].arg[0].i == 1

    _, ops, g_in = gradient_ops(op_type, ["X", "W", "b"], ["Y"], no_gradient_to_input=1, **kw)
    assert [list(o.output) for o in ops] == [["W_grad", "b_grad"]]
    assert g_in == [None, "W_grad", "b_grad"]

    _, ops, g_in = gradient_ops(op_type, ["X", "W"], ["Y"], no_gradient_to_input=1, **kw)
    assert [list(o.output) for o in ops] == [["W_grad"]]
    assert g_in == [None, "W_grad"]
    assert arg_names(ops[0]) == ["no_bias", "no_gradient_to_input", "kernels"]


def test_conv_gradient_copies_forward_arguments_and_device():
    dev = core.DeviceOption(0)
    op = core.CreateOperator("Conv", ["X", "W"], ["Y"], kernel=3, pad_t=1, pad_l=0, pad_b=2,
                             pad_r=1, group=2, order="NHWC", no_bias=1, device_option=dev,
                             engine="CUDNN")
    ops, _ = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    assert arg_names(ops[0]) == ["no_bias", "kernel", "pad_t", "pad_l", "pad_b", "pad_r",
                                 "group", "order"]
    assert ops[0].engine == "CUDNN" and ops[0].HasField("device_option")


@pytest.mark.parametrize("op_type", POOL_TYPES)
def test_pool_gradient_ops_as_caffe2_emits_them(op_type):
    _, ops, g_in = gradient_ops(op_type, ["X"], ["Y"], kernel=3, stride=2)
    assert [(o.type, list(o.input), list(o.output), arg_names(o)) for o in ops] == \
        [(op_type + "Gradient", ["X", "Y", "Y_grad"], ["X_grad"], ["kernel", "stride"])]
    assert g_in == ["X_grad"]


# ------------------------------------------------------------------- values pinned from Caffe2 1.10

def test_max_pool_gradient_goes_to_every_tie():
    x = np.array([[[[1, 1, 0], [1, 0, 0], [0, 0, 2]]]], np.float32)
    _, (dx,) = run_gradient("MaxPool", [x], kernel=2, stride=1)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [2, 0, 0], [0, 0, 1]])
    x = np.array([[[[2, 1, 2], [1, 2, 0], [0, 0, 2]]]], np.float32)
    _, (dx,) = run_gradient("MaxPool", [x], output_grads=[np.full((1, 1, 1, 1), 3, np.float32)],
                            global_pooling=1)
    np.testing.assert_array_equal(dx[0, 0], [[3, 0, 3], [0, 3, 0], [0, 0, 3]])


def test_max_pool_gradient_skips_nan_windows():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    _, (dx,) = run_gradient("MaxPool", [x], kernel=2, stride=2)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0, 0], [0, 0, 0, 1],
                                             [0, 0, 0, 0], [0, 1, 0, 1]])


@pytest.mark.parametrize("legacy", [0, 3])
def test_average_pool_gradient_factors(legacy):
    """Caffe2: 5x5, kernel 3, stride 2, pad 1: border windows count 4 or 6 inputs, or 9."""
    x = np.arange(1, 26, dtype=np.float32).reshape(1, 1, 5, 5)
    _, (dx,) = run_gradient("AveragePool", [x], kernel=3, stride=2, pad=1, legacy_pad=legacy)
    r = np.array([1 / 2, 1 / 2 + 1 / 3, 1 / 3, 1 / 2 + 1 / 3, 1 / 2])
    np.testing.assert_allclose(dx[0, 0], np.outer(r, r), rtol=1e-6)  # 0.25, 0.41666, ...
    _, (dx,) = run_gradient("AveragePool", [x], kernel=3, stride=2, pad=1, legacy_pad=legacy,
                            count_include_pad=1)
    r = np.array([1, 2, 1, 2, 1])
    np.testing.assert_allclose(dx[0, 0], np.outer(r, r) / 9, rtol=1e-6)


def test_average_pool_gradient_extra_legacy_window():
    """legacy_pad=3's extra window over the border: count_include_pad still divides by 9."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    _, (dx,) = run_gradient("AveragePool", [x], kernel=3, stride=2, legacy_pad=3)
    r = np.array([1 / 3, 1 / 3, 1 / 3 + 1 / 2, 1 / 2])
    np.testing.assert_allclose(dx[0, 0], np.outer(r, r), rtol=1e-6)
    _, (dx,) = run_gradient("AveragePool", [x], kernel=3, stride=2, legacy_pad=3,
                            count_include_pad=1)
    r = np.array([1, 1, 2, 1])
    np.testing.assert_allclose(dx[0, 0], np.outer(r, r) / 9, rtol=1e-6)


# ----------------------------------------------------------------------------- Conv vs torch

def conv_args(draw, nd, dilation=True):
    """(kernel, stride, dilation, heads, tails, Caffe2 args) in one of Caffe2's spellings."""
    k = [draw(st.integers(1, 3)) for _ in range(nd)]
    s = [draw(st.integers(1, 3)) for _ in range(nd)]
    d = [draw(st.sampled_from([1, 1, 2])) for _ in range(nd)] if dilation else [1] * nd
    heads = [draw(st.integers(0, 2)) for _ in range(nd)]
    tails = [draw(st.integers(0, 2)) for _ in range(nd)]
    if nd == 2 and draw(st.booleans()):
        args = dict(kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1],
                    pad_t=heads[0], pad_l=heads[1], pad_b=tails[0], pad_r=tails[1])
        if d != [1, 1]:
            args.update(dilation_h=d[0], dilation_w=d[1])
    else:
        args = dict(kernels=k, strides=s, pads=heads + tails)
        if d != [1] * nd:
            args["dilations"] = d
    return k, s, d, heads, tails, args


def torch_pad(heads, tails):
    """F.pad's argument: last axis first."""
    return [p for h, t in zip(reversed(heads), reversed(tails)) for p in (h, t)]


@st.composite
def conv_problem(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    k, s, d, heads, tails, args = conv_args(draw, nd)
    G = draw(st.sampled_from([1, 1, 2]))
    Cg, Mg, N = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    sizes = [draw(st.integers(1, 6 if nd < 3 else 4)) for _ in range(nd)]
    assume(all(n + h + t >= dd * (kk - 1) + 1
               for n, h, t, dd, kk in zip(sizes, heads, tails, d, k)))
    nhwc = draw(st.booleans())
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 1000))
    x, w = randn(seed, N, G * Cg, *sizes), randn(seed + 1, G * Mg, Cg, *k)
    ins = [x, w] + ([randn(seed + 2, G * Mg)] if bias else [])
    if G > 1:
        args["group"] = G
    if nhwc:
        args["order"] = "NHWC"
        ins[0], ins[1] = to_nhwc(x), to_nhwc(w)
    conv = getattr(F, f"conv{nd}d")

    def torch_fn(x, w, b=None):
        if nhwc:
            x, w = cf(x), cf(w)
        y = conv(F.pad(x, torch_pad(heads, tails)), w, b, stride=s, dilation=d, groups=G)
        return cl(y) if nhwc else y
    op_type = draw(st.sampled_from(["Conv", f"Conv{nd}D"]))
    return op_type, ins, args, torch_fn


@SETTINGS
@given(conv_problem())
def test_conv_gradient_vs_torch_and_finite_differences(problem):
    op_type, ins, args, torch_fn = problem
    grads = check_gradient(op_type, ins, torch_fn=torch_fn, **args)
    assert len(grads) == len(ins) and all(g is not None for g in grads)


@settings(max_examples=10, deadline=None)
@given(conv_problem(), st.booleans())
def test_conv_gradient_without_dx(problem, bias_present):
    """no_gradient_to_input=1: the same dW/db, no dX."""
    op_type, ins, args, _ = problem
    ins = ins[:3] if bias_present and len(ins) == 3 else ins[:2]
    full = run_gradient(op_type, ins, **args)[1]
    part = run_gradient(op_type, ins, no_gradient_to_input=1, **args)[1]
    assert part[0] is None
    for a, b in zip(full[1:], part[1:]):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 1000), st.sampled_from([2, 2, 3]))
def test_conv_same_padding_gradient_finite_differences(seed, stride):
    """legacy_pad=2 (SAME): the odd pad at the tail, and negative pads that crop the input."""
    x, w = randn(seed, 1, 2, 7, 5), randn(seed + 1, 3, 2, 1, 2)
    check_gradient("Conv", [x, w], kernels=[1, 2], strides=[stride, 3], legacy_pad=2)
    check_gradient("Conv", [x, w, randn(seed, 3)], kernels=[1, 2], legacy_pad=1)


def test_conv_gradient_when_windows_see_only_padding():
    """A window that ends inside the head padding (pad >= kernel, stride past the input):
    that input position gets no gradient, and dX keeps X's shape."""
    x, w = randn(0, 1, 1, 1, 1, 1), randn(1, 2, 1, 1, 1, 1)
    grads = check_gradient("Conv", [x, w], kernels=[1, 1, 1], strides=[1, 1, 3],
                           pads=[0, 0, 2, 0, 0, 0])
    assert grads[0].shape == x.shape and not grads[0].any()
    x = randn(2, 1, 1, 2, 3)
    check_gradient("Conv", [x, randn(3, 2, 1, 1, 2), randn(4, 2)], kernels=[1, 2],
                   strides=[2, 3], pads=[3, 0, 0, 4],
                   torch_fn=lambda x, w, b: F.conv2d(F.pad(x, [0, 4, 3, 0]), w, b, stride=[2, 3]))


def test_conv_gradient_of_an_empty_batch():
    x, w = np.zeros((0, 2, 5, 5), np.float32), randn(0, 3, 2, 3, 3)
    _, (dx, dw, db) = run_gradient("Conv", [x, w, randn(1, 3)], kernel=3,
                                   output_grads=[np.zeros((0, 3, 3, 3), np.float32)])
    assert dx.shape == x.shape and not dw.any() and not db.any() and db.dtype == np.float32


# --------------------------------------------------------------------------- ConvTranspose vs torch

@st.composite
def conv_transpose_problem(draw):
    k = [draw(st.integers(1, 3)) for _ in range(2)]
    s = [draw(st.integers(1, 3)) for _ in range(2)]
    adj = [draw(st.integers(0, v - 1)) for v in s]
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    G = draw(st.sampled_from([1, 1, 2]))
    Mg, Cg, N = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    H, W = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    full = [(n - 1) * st_ + kk + a for n, st_, kk, a in zip((H, W), s, k, adj)]
    assume(full[0] > pads[0] + pads[2] and full[1] > pads[1] + pads[3])
    args = dict(kernels=k, strides=s, pads=pads)
    if any(adj):
        args["adjs"] = adj
    if G > 1:
        args["group"] = G
    seed = draw(st.integers(0, 1000))
    x, w = randn(seed, N, G * Mg, H, W), randn(seed + 1, G * Mg, Cg, *k)
    ins = [x, w] + ([randn(seed + 2, G * Cg)] if draw(st.booleans()) else [])
    nhwc = draw(st.booleans())
    if nhwc:
        args["order"] = "NHWC"
        ins[0], ins[1] = to_nhwc(x), to_nhwc(w)

    def torch_fn(x, w, b=None):
        if nhwc:
            x, w = cf(x), cf(w)
        y = F.conv_transpose2d(x, w, b, stride=s, output_padding=adj, groups=G)
        y = y[:, :, pads[0]:full[0] - pads[2], pads[1]:full[1] - pads[3]]
        return cl(y) if nhwc else y
    return ins, args, torch_fn


@SETTINGS
@given(conv_transpose_problem())
def test_conv_transpose_gradient_vs_torch_and_finite_differences(problem):
    ins, args, torch_fn = problem
    check_gradient("ConvTranspose", ins, torch_fn=torch_fn, **args)


def test_conv_transpose_gradient_legacy_pads():
    x, w, b = randn(0, 1, 2, 3, 4), randn(1, 2, 3, 3, 2), randn(2, 3)
    for legacy in (1, 2):
        check_gradient("ConvTranspose", [x, w, b], kernels=[3, 2], strides=[2, 2],
                       legacy_pad=legacy,
                       torch_fn=lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2))


# ----------------------------------------------------------------------------- pooling vs torch

@st.composite
def pool_problem(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    mode = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 7 if nd < 3 else 4)) for _ in range(nd)]
    nhwc = draw(st.booleans())
    include = mode == "AveragePool" and draw(st.booleans())
    seed = draw(st.integers(0, 1000))
    x = distinct(seed, N, C, *sizes)
    if draw(st.integers(0, 4)) == 0:
        args = dict(global_pooling=1)
        k, s, heads, tails = sizes, [1] * nd, [0] * nd, [0] * nd
    else:
        k = [draw(st.integers(1, 3)) for _ in range(nd)]
        s = [draw(st.integers(1, 3)) for _ in range(nd)]
        heads = [draw(st.integers(0, kk - 1)) for kk in k]
        tails = [draw(st.integers(0, kk - 1)) for kk in k]
        assume(all(n + h + t >= kk for n, h, t, kk in zip(sizes, heads, tails, k)))
        args = dict(kernels=k, strides=s, pads=heads + tails)
        # windows past the tail pad are never taken: trim the tails torch pads with
        out = [(n + h + t - kk) // ss + 1 for n, h, t, kk, ss in zip(sizes, heads, tails, k, s)]
        tails = [(o - 1) * ss + kk - n - h for o, ss, kk, n, h in zip(out, s, k, sizes, heads)]
    if include:
        args["count_include_pad"] = 1
    if nhwc:
        args["order"] = "NHWC"
        x = to_nhwc(x)
    pool = getattr(F, f"{'max' if mode == 'MaxPool' else 'avg'}_pool{nd}d")

    def torch_fn(x):
        if nhwc:
            x = cf(x)
        fill = -np.inf if mode == "MaxPool" else 0.0
        y = pool(F.pad(x, torch_pad(heads, tails), value=fill), k, s)
        if mode == "AveragePool" and not include:  # divide by the input positions only
            ones = F.pad(torch.ones_like(x), torch_pad(heads, tails))
            y = y / pool(ones, k, s)
        return cl(y) if nhwc else y
    op_type = draw(st.sampled_from([mode, f"{mode}{nd}D"]))
    return op_type, [x], args, torch_fn


@SETTINGS
@given(pool_problem())
def test_pool_gradient_vs_torch_and_finite_differences(problem):
    op_type, ins, args, torch_fn = problem
    check_gradient(op_type, ins, torch_fn=torch_fn, **args)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 1000), st.sampled_from(["MaxPool", "AveragePool"]),
       st.sampled_from([2, 3]), st.booleans())
def test_pool_legacy_pads_gradient_finite_differences(seed, mode, legacy, include):
    """SAME (odd pad at the tail, crops when kernel < stride) and Caffe's legacy ceil rule."""
    x = distinct(seed, 1, 2, 7, 6)
    args = dict(count_include_pad=1) if include and mode == "AveragePool" else {}
    if legacy == 2:
        args.update(kernels=[3, 1], strides=[2, 3])
    else:  # the ceil rule adds a window over the tail
        args.update(kernels=[3, 2], strides=[2, 2], pads=[1, 0, 1, 0])
    check_gradient(mode, [x], legacy_pad=legacy, **args)


# --------------------------------------------------------------------------- errors and shape rules

def test_gradient_shape_rules():
    X, W, dY = TensorType((2, 4, 7, 6)), TensorType((6, 2, 3, 3)), TensorType((2, 6, 5, 4))
    assert infer("ConvGradient", [X, W, dY], 3, kernel=3, group=2) == \
        [W, TensorType((6,)), X]
    assert infer("ConvGradient", [X, W, dY], 2, kernel=3, group=2, no_bias=1) == [W, X]
    assert infer("Conv2DGradient", [X, W, dY], 2, kernel=3, group=2) == [W, TensorType((6,))]
    unknown = TensorType(None)
    assert infer("ConvGradient", [unknown, W, dY], 1, kernel=3, group=2, no_bias=1) == [W]
    Xt, Wt, dYt = TensorType((2, 4, 3, 3)), TensorType((4, 3, 2, 2)), TensorType((2, 3, 6, 5))
    assert infer("ConvTransposeGradient", [Xt, Wt, dYt], 3, kernel=2, stride=2, pad_t=0,
                 pad_l=0, pad_b=0, pad_r=1) == [Wt, TensorType((3,)), Xt]
    Xp, Yp = TensorType((1, 2, 5, 5)), TensorType((1, 2, 2, 2))
    assert infer("MaxPoolGradient", [Xp, Yp, Yp], kernel=3, stride=2) == [Xp]


def test_gradient_errors_name_the_op_and_blob():
    x, w = randn(0, 1, 2, 5, 5), randn(1, 3, 2, 3, 3)
    with pytest.raises(ShapeError, match="in2.*shape \\[1, 3, 2, 2\\].*\\[1, 3, 3, 3\\]"):
        run("ConvGradient", [x, w, randn(2, 1, 3, 2, 2)], 3, kernel=3)
    with pytest.raises(ArgumentError, match="ConvGradient.*no_bias=1"):
        run("ConvGradient", [x, w, randn(2, 1, 3, 3, 3)], 1, kernel=3)
    with pytest.raises(ArgumentError, match="no_bias=1 writes \\[dW, dX\\]"):
        run("ConvGradient", [x, w, randn(2, 1, 3, 3, 3)], 3, kernel=3, no_bias=1)
    with pytest.raises(ShapeError, match="in1"):
        run("MaxPoolGradient", [x, randn(0, 1, 2, 3, 3), randn(0, 1, 2, 2, 2)], kernel=3, stride=2)
    with pytest.raises(ShapeError, match="in2"):
        run("AveragePoolGradient", [x, randn(0, 1, 2, 2, 2), randn(0, 1, 2, 3, 3)], kernel=3,
            stride=2)
    with pytest.raises(C2Error, match="float32"):
        run("ConvTransposeGradient", [x.astype(np.float64), randn(1, 2, 3, 3, 3),
                                      randn(2, 1, 3, 7, 7)], 3, kernel=3)


# -------------------------------------------------------------------- a backward pass through a net

def test_backward_pass_through_conv_pool_net_matches_torch():
    """Conv -> MaxPool -> ConvTranspose -> AveragePool (global): the backward pass builds the
    gradient ops from the rules; run on the reference executor, against torch autograd."""
    from c2compile import workspace
    net = core.Net("spatial_grad")
    net.Conv(["x", "w1", "b1"], "c1", kernel=3, pad=1)
    net.MaxPool("c1", "p1", kernel=2, stride=2)
    net.ConvTranspose(["p1", "w2"], "ct", kernel=2, stride=2)
    net.AveragePool("ct", "loss", global_pooling=1)
    grad_map = net.AddGradientOperators(["loss"])
    assert [op.type for op in net.Proto().op[4:]] == [
        "ConstantFill", "AveragePoolGradient", "ConvTransposeGradient", "MaxPoolGradient",
        "ConvGradient"]
    assert list(net.Proto().op[6].output) == ["w2_grad", "p1_grad"]
    feeds = dict(x=distinct(0, 2, 3, 6, 6, gap=0.01), w1=randn(1, 4, 3, 3, 3), b1=randn(2, 4),
                 w2=randn(3, 4, 5, 2, 2))
    for name, v in feeds.items():
        workspace.FeedBlob(name, v)
    workspace.RunNetOnce(net)
    ts = {n: torch.tensor(v.astype(np.float64), requires_grad=True) for n, v in feeds.items()}
    c1 = F.conv2d(ts["x"], ts["w1"], ts["b1"], padding=1)
    ct = F.conv_transpose2d(F.max_pool2d(c1, 2, 2), ts["w2"], stride=2)
    ct.mean(dim=(2, 3)).sum().backward()
    for n in feeds:
        np.testing.assert_allclose(workspace.FetchBlob(str(grad_map[n])), ts[n].grad.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=n)


# --------------------------------------------------------------------- Caffe2-style gradient checks

class TestSpatialGradientChecks(hu.HypothesisTestCase):
    @given(N=st.integers(1, 2), C=st.integers(1, 3), M=st.integers(1, 3), size=st.integers(3, 6),
           k=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 1),
           order=st.sampled_from(["NCHW", "NHWC"]), seed=st.integers(0, 100),
           **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_conv(self, N, C, M, size, k, stride, pad, order, seed, gc, dc):
        X, W, b = randn(seed, N, C, size, size), randn(seed + 1, M, C, k, k), randn(seed, M)
        if order == "NHWC":
            X, W = to_nhwc(X), to_nhwc(W)
        op = core.CreateOperator("Conv", ["X", "W", "b"], ["Y"], kernel=k, stride=stride,
                                 pad=pad, order=order)
        for i in range(3):
            self.assertGradientChecks(gc, op, [X, W, b], i, [0])

    @given(k=st.integers(1, 3), stride=st.integers(1, 3), seed=st.integers(0, 100),
           **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_conv_transpose(self, k, stride, seed, gc, dc):
        X, W, b = randn(seed, 1, 2, 3, 3), randn(seed + 1, 2, 3, k, k), randn(seed, 3)
        op = core.CreateOperator("ConvTranspose", ["X", "W", "b"], ["Y"], kernel=k,
                                 stride=stride)
        for i in range(3):
            self.assertGradientChecks(gc, op, [X, W, b], i, [0])

    @given(op_type=st.sampled_from(["MaxPool", "AveragePool"]), k=st.integers(1, 3),
           stride=st.integers(1, 3), seed=st.integers(0, 100), **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_pool(self, op_type, k, stride, seed, gc, dc):
        X = distinct(seed, 1, 2, 5, 5, gap=0.2)  # the check's step is 0.05
        op = core.CreateOperator(op_type, ["X"], ["Y"], kernel=k, stride=stride)
        self.assertGradientChecks(gc, op, [X], 0, [0])


def test_every_spatial_gradient_op_is_registered():
    from c2compile.ops import all_ops
    ops = all_ops()
    for t in CONV_TYPES + ["ConvTranspose"] + POOL_TYPES:
        assert ops[t].grad is not None and t + "Gradient" in ops
    for t, s in itertools.product(["Conv", "MaxPool", "AveragePool"], ["1D", "2D", "3D"]):
        assert ops[t + s + "Gradient"].reference is ops[t + "Gradient"].reference
