"""Cython kernels of ConvGradient, ConvTransposeGradient, MaxPoolGradient and
AveragePoolGradient (and the 1D/2D/3D aliases) against the reference executor.

Each gradient case comes from a forward case drawn by test_cpu_spatial's strategies (every
geometry, argument spelling and layout the forward kernels take): its forward output on the
reference gives Y, a random dY is drawn, and the gradient op gets the inputs and outputs its
rule gives it (with or without bias, with or without dX). Many cases share one module.
"""
import numpy as np
from hypothesis import assume, given, settings, strategies as st

from c2compile.ops.testing import run
from tests.backends.cpu_harness import Case, check_cpu, kernel_source
from tests.backends.test_cpu_spatial import (
    _cases, conv_case, conv_transpose_case, pool_case)

SETTINGS = settings(max_examples=4, deadline=None)


def grad_case(fwd: Case, seed: int, no_dx: bool = False, ties: bool = False) -> Case:
    """The gradient op of forward case `fwd`, as its rule writes it (`ties`: integer data,
    so that max-pool windows have ties)."""
    ins = [np.round(x) if ties else x for x in fwd.inputs]
    y = run(fwd.op_type, ins, **fwd.args)[0]
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    args = dict(fwd.args)
    if fwd.op_type.startswith(("MaxPool", "AveragePool")):
        return Case(fwd.op_type + "Gradient", [ins[0], y, dy], args, rtol=1e-4, atol=1e-5)
    outputs = 1 + (len(ins) == 3) + (not no_dx)
    if len(ins) == 2:
        args["no_bias"] = 1
    # dW sums images x positions products in float32, in another order than the reference:
    # its rounding grows like the typical |dW|, the root of that count
    dyt = ins[0] if fwd.op_type == "ConvTranspose" else y
    terms = dyt.size // max(dyt.shape[-1 if args.get("order") == "NHWC" else 1], 1)
    return Case(fwd.op_type + "Gradient", [ins[0], ins[1], dy], args, outputs=outputs,
                rtol=1e-4, atol=1e-5 * max(1.0, terms ** 0.5))


@st.composite
def gradient_of(draw, forward):
    fwd = draw(forward)
    if fwd is None:
        return None
    return grad_case(fwd, draw(st.integers(0, 2**31)), no_dx=draw(st.integers(0, 3)) == 0,
                     ties=draw(st.integers(0, 3)) == 0)


@SETTINGS
@given(_cases(gradient_of(conv_case())))
def test_conv_gradient(cases):
    assume(len(cases) >= 3)
    check_cpu(cases)


@SETTINGS
@given(_cases(st.one_of(gradient_of(conv_transpose_case()), gradient_of(pool_case())), 8, 12))
def test_conv_transpose_and_pooling_gradients(cases):
    assume(len(cases) >= 4)
    check_cpu(cases)


def test_gradient_edge_geometries():
    """Written out: pad >= kernel (windows that see only padding), stride > kernel, SAME
    crops, dilation, 1x1 (NHWC takes the input as its column matrix), an empty batch,
    windows that tile the input (pooling writes dX once), legacy pooling windows, global
    pooling, NaN windows, ties (signed zeros and infinities among them)."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    fwd = [
        Case("Conv", [r(2, 3, 4, 5), r(4, 3, 2, 2), r(4)], dict(kernel=2, pad=3)),
        Case("Conv", [r(1, 2, 9, 9), r(3, 2, 2, 2)], dict(kernel=2, stride=4)),
        Case("Conv", [r(1, 2, 7, 8), r(3, 2, 1, 1)], dict(kernel=1, stride=3, legacy_pad=2)),
        Case("Conv1D", [r(2, 2, 7), r(3, 2, 3)], dict(kernels=[3], strides=[4], legacy_pad=2)),
        Case("Conv", [r(3, 4, 5, 5), r(6, 4, 1, 1), r(6)], dict(kernel=1)),
        Case("Conv", [r(2, 5, 7, 6), r(8, 1, 1, 6), r(8)], dict(kernel=1, order="NHWC")),
        Case("Conv", [r(2, 5, 7, 6), r(4, 1, 1, 3)], dict(kernel=1, order="NHWC", group=2)),
        Case("Conv", [r(1, 2, 12, 11), r(5, 2, 3, 3)], dict(kernel=3, pad=2, dilation=2)),
        Case("Conv3D", [r(1, 4, 3, 5, 4), r(4, 2, 2, 2, 3)],
             dict(kernels=[2, 2, 3], pads=[1, 0, 1, 0, 1, 1], group=2)),
        Case("Conv3D", [r(2, 3, 5, 4, 4), r(4, 2, 3, 2, 2)],
             dict(kernels=[2, 3, 2], strides=[1, 2, 1], order="NHWC", group=2)),
        Case("Conv3D", [r(1, 1, 1, 3, 9), r(9, 1, 4, 3, 3), r(9)],
             dict(kernels=[1, 4, 3], strides=[3, 3, 1], pads=[2, 4, 0, 0, 2, 4],
                  order="NHWC", group=3)),
        Case("Conv", [r(1, 2, 1, 3), r(2, 2, 1, 2)], dict(kernels=[1, 2], strides=[2, 3],
                                                          pads=[3, 0, 0, 4])),
        Case("ConvTranspose", [r(2, 4, 3, 5), r(4, 3, 3, 2), r(6)],
             dict(kernels=[3, 2], strides=[2, 3], pads=[1, 0, 2, 0], adjs=[1, 2], group=2)),
        Case("ConvTranspose", [r(2, 3, 5, 4), r(4, 1, 1, 3)], dict(kernel=1, order="NHWC")),
        Case("MaxPool", [r(2, 3, 8, 8)], dict(kernel=2, stride=2)),
        Case("AveragePool", [r(2, 3, 9, 6)], dict(kernels=[3, 2], strides=[3, 2])),
        Case("MaxPool", [r(1, 3, 13, 13)], dict(kernel=3, stride=2, legacy_pad=3)),
        Case("AveragePool", [r(2, 3, 8, 8)], dict(kernel=3, stride=2, pad=1, legacy_pad=3,
                                                   count_include_pad=1)),
        Case("AveragePool", [r(1, 100, 13, 13)], dict(global_pooling=1)),
        Case("MaxPool", [r(2, 9, 9, 3)], dict(kernel=4, stride=3, legacy_pad=2, order="NHWC")),
        Case("MaxPool3D", [r(1, 2, 4, 5, 3)], dict(kernels=[2, 2, 2], strides=[1, 2, 1])),
        # gcc 12 miscompiled `dY if X == Y else 0` here (see the template's pool_share)
        Case("MaxPool1D", [r(2, 7, 4)], dict(kernels=[1], strides=[3], order="NHWC")),
        Case("MaxPool", [r(2, 5, 4, 3)], dict(global_pooling=1, order="NHWC")),
        Case("AveragePool", [r(1, 4, 5, 3, 2)], dict(kernels=[2, 2, 2], order="NHWC")),
    ]
    cases = [grad_case(c, i) for i, c in enumerate(fwd)]
    cases += [grad_case(c, i, no_dx=True) for i, c in enumerate(fwd[:14])]
    cases += [grad_case(c, i, ties=True) for i, c in enumerate(fwd[14:])]
    x = np.arange(2 * 16, dtype=np.float32).reshape(2, 1, 4, 4)
    x[0, 0, 1, 1] = x[1, 0, 0, 0] = np.nan
    z = np.array([-0.0, 0.0, -1, -0.0, np.inf, 1, -np.inf, -np.inf, -np.inf], np.float32)
    z = np.tile(z, 4).reshape(1, 2, 3, 6)  # signed zeros tie (-0 == +0), infinities
    cases += [grad_case(Case("MaxPool", [x], dict(kernel=2, stride=2)), 0),
              grad_case(Case("MaxPool", [x], dict(global_pooling=1)), 1),
              grad_case(Case("MaxPool", [x], dict(kernel=3, pad=1)), 2),
              grad_case(Case("MaxPool", [z], dict(kernels=[1, 3], strides=[1, 3])), 3),
              grad_case(Case("MaxPool", [z], dict(kernel=2, stride=1, pad=1)), 4)]
    empty = [Case("Conv", [r(0, 3, 5, 5), r(4, 3, 3, 3), r(4)], dict(kernel=3)),
             Case("Conv", [r(0, 5, 5, 3), r(4, 3, 3, 3)], dict(kernel=3, order="NHWC"))]
    cases += [grad_case(c, 0) for c in empty]
    out = check_cpu(cases)
    assert not out[-1][0].any() and not out[-2][1].any()  # empty batch: dW, db = 0


def test_big_conv_gradients_split_images_between_two_threads():
    """Big enough GEMMs take the two-thread path (each thread half the images, its own
    scratch; the second thread's dW added at the end), in both layouts, with and without
    bias and dX; a LeNet-shaped conv among them."""
    rng = np.random.default_rng(1)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    fwd = [Case("Conv", [r(9, 16, 16, 16), r(32, 16, 3, 3), r(32)], dict(kernel=3, pad=1)),
           Case("Conv", [r(9, 16, 16, 16), r(32, 3, 3, 16)], dict(kernel=3, pad=1,
                                                                   order="NHWC")),
           Case("Conv", [r(16, 20, 12, 12), r(50, 20, 5, 5), r(50)], dict(kernel=5)),
           Case("ConvTranspose", [r(8, 64, 8, 8), r(64, 32, 3, 3), r(32)],
                dict(kernel=3, stride=2, pad=1))]
    cases = [grad_case(c, i) for i, c in enumerate(fwd)] + [grad_case(fwd[2], 9, no_dx=True)]
    for c in cases:
        assert "prange(2" in kernel_source(c), c.args
    check_cpu(cases)


def test_conv_gradients_of_big_images_take_one_image_per_sgemm():
    """NCHW images of 256 pixels or more: one image per sgemm, dY read where it lies (no
    gather), ConvTranspose's dX written straight into place; groups, bias or not, dX or not,
    one thread and two."""
    rng = np.random.default_rng(3)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    fwd = [Case("Conv", [r(3, 4, 19, 19), r(6, 2, 3, 3), r(6)], dict(kernel=3, group=2)),
           Case("Conv", [r(2, 3, 20, 18), r(4, 3, 3, 3)], dict(kernel=3, pad=2, stride=1)),
           Case("Conv", [r(64, 1, 28, 28), r(20, 1, 5, 5), r(20)], dict(kernel=5)),
           Case("ConvTranspose", [r(2, 4, 16, 16), r(4, 3, 3, 3), r(6)],
                dict(kernel=3, stride=2, pad=1, group=2))]
    cases = [grad_case(c, i) for i, c in enumerate(fwd)]
    cases += [grad_case(fwd[0], 7, no_dx=True), grad_case(fwd[3], 8, no_dx=True)]
    for c in cases:
        src = kernel_source(c)
        assert "no gather" in src and "side by side" not in src, c.args
    assert "prange(2" in kernel_source(cases[2])  # LeNet's conv1: split between two threads
    check_cpu(cases)


def test_big_batches_of_small_images_split_the_forward_conv_too():
    """The forward NCHW conv of many small images (LeNet's conv2 at batch 64; an odd
    batch) takes the same two-thread image split as its gradient."""
    rng = np.random.default_rng(2)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = [Case("Conv", [r(64, 20, 12, 12), r(50, 20, 5, 5), r(50)], dict(kernel=5),
                  rtol=1e-4, atol=1e-4),
             Case("Conv", [r(63, 16, 10, 10), r(40, 16, 3, 3)], dict(kernel=3), rtol=1e-4,
                  atol=1e-4)]
    for c in cases:
        assert "prange(2" in kernel_source(c), c.args
    check_cpu(cases)


def test_big_images_in_a_split_batch_take_one_image_per_sgemm():
    """NCHW images of 256 pixels or more split between two threads: each image's sgemm
    writes Y in place over its bias (no batched Z to copy out); groups, bias or not, 1x1
    direct, an odd batch."""
    rng = np.random.default_rng(4)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    tol = dict(rtol=1e-4, atol=1e-4)
    cases = [Case("Conv", [r(64, 1, 28, 28), r(20, 1, 5, 5), r(20)], dict(kernel=5), **tol),
             Case("Conv", [r(32, 8, 16, 16), r(64, 4, 3, 3)], dict(kernel=3, pad=1, group=2),
                  **tol),
             Case("Conv", [r(17, 64, 16, 16), r(64, 64, 1, 1), r(64)], dict(kernel=1), **tol)]
    for c in cases:
        src = kernel_source(c)
        assert "prange(2" in src and "written in place" in src, c.args
        assert "side by side" not in src, c.args
    check_cpu(cases)


def test_one_image_convs_run_in_pixel_chunks(small_gemm):
    """One image per sgemm: each thread's block of Y is computed a chunk of pixels at a time
    (bias fill, sgemm, Relu per chunk), ragged last chunks included; one thread, pixels
    split, channels split with groups. Chunks are 512 pixels, or with OpenBLAS's small
    sgemm kernel the most multiples of 16 whose sgemm fits it (pixels x channels x CK <=
    10^6: 18512 > 1444 pixels, 96 with 64 channels over 144, 416 with 300 over 8). Where
    not even 16 pixels fit, chunks of 64 pixels go in blocks of channels that do (fire8's
    expand3x3, 128 channels a thread over 576: 24; 300 channels over 256, one thread: 56,
    the last block 20)."""
    rng = np.random.default_rng(5)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    tol = dict(rtol=1e-4, atol=1e-4)
    cases = [Case("Conv", [r(1, 2, 40, 40), r(3, 2, 3, 3)], dict(kernel=3), **tol),
             Case("Conv", [r(2, 16, 41, 43), r(64, 16, 3, 3), r(64)], dict(kernel=3, pad=1),
                  **tol),
             Case("Conv", [r(1, 16, 24, 24), r(1200, 8, 1, 1), r(1200)],
                  dict(kernel=1, group=2), **tol),
             Case("Conv", [r(1, 64, 13, 13), r(256, 64, 3, 3), r(256)], dict(kernel=3, pad=1),
                  **tol),
             Case("Conv", [r(1, 256, 5, 5), r(300, 256, 1, 1)], dict(kernel=1), **tol)]
    splits = [None, "pixels", "channels", "channels", None]
    chunks = [18512, 96, 416, 64, 64] if small_gemm else [512] * 5
    channel_blocks = [None, None, None, 24, 56] if small_gemm else [None] * 5
    for c, axis, chunk, block in zip(cases, splits, chunks, channel_blocks):
        src = kernel_source(c)
        assert f"in chunks of {chunk}" in src, c.args
        assert (axis is not None) == ("prange(2" in src), c.args
        assert axis is None or f"two threads take output {axis}" in src, c.args
        assert (block is not None) == ("channels per sgemm" in src), c.args
        assert block is None or f"# {block} channels per sgemm" in src, c.args
    check_cpu(cases)


def test_small_images_skip_the_gather_with_the_small_sgemm_kernel(small_gemm):
    """Small NCHW images (LeNet's conv2: 64 pixels, 50 channels over 500) are gathered side
    by side into one wide sgemm only where OpenBLAS has no small-matrix kernel; with it,
    each image's sgemm takes 32 pixels at a time straight into Y. Images of fewer than 16
    pixels are gathered either way."""
    rng = np.random.default_rng(6)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    tol = dict(rtol=1e-4, atol=1e-4)
    cases = [Case("Conv", [r(64, 20, 12, 12), r(50, 20, 5, 5), r(50)], dict(kernel=5), **tol),
             Case("Conv", [r(3, 6, 11, 10), r(8, 3, 3, 3), r(8)], dict(kernel=3, group=2),
                  **tol),
             Case("Conv", [r(9, 4, 3, 3), r(5, 4, 1, 1)], dict(kernel=1), **tol)]
    for c in cases[:2]:
        assert ("side by side" in kernel_source(c)) == (not small_gemm), c.args
    assert "in chunks of 32" in kernel_source(cases[0]) or not small_gemm
    assert "side by side" in kernel_source(cases[2])
    check_cpu(cases)


def test_big_poolings_split_planes_between_two_threads():
    """NCHW poolings and their gradients over many planes take the plane split (two threads,
    half the (image, channel) planes each; average pooling's per-plane share scratch per
    thread): LeNet's tiling 2x2 max pool, padded and overlapping windows, ties, 3-d."""
    rng = np.random.default_rng(3)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    fwd = [Case("MaxPool", [r(64, 20, 24, 24)], dict(kernel=2, stride=2)),
           Case("MaxPool", [np.round(r(8, 9, 33, 31))], dict(kernel=3, stride=2, pad=1)),
           Case("AveragePool", [r(6, 13, 30, 30)], dict(kernel=3, stride=1, pad=1)),
           Case("AveragePool", [r(5, 7, 12, 13, 14)], dict(kernels=[2, 3, 2], strides=[2, 1, 2],
                                                          count_include_pad=1))]
    cases = fwd + [grad_case(c, i) for i, c in enumerate(fwd)]
    for c in cases:
        assert "prange(" in kernel_source(c), c
    check_cpu(cases)
