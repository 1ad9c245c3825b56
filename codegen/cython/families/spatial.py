"""Convolution and pooling kernels (template: spatial.pyx.j2).

The geometry (output sizes, effective head pads including SAME's negative crops, the
legacy_pad rules) comes from the op definitions' own helpers (`_window_args`, `_geometry`,
`_conv_transpose_check`), never re-derived here. Every spatial op is written for up to
three spatial axes; a 1-d or 2-d op fills the missing leading axes with size 1 (kernel 1,
stride 1, pad 0) and the template leaves out the loops and index terms of those axes.

Lowering:
* Conv, NCHW: per image and group, Y_g[Mg, P] = W_g[Mg, Cg*K] . cols[Cg*K, P] with one
  sgemm; a 1x1 stride-1 unpadded conv uses the input itself as `cols` (no im2col),
  otherwise im2col writes `cols` into a scratch buffer. Padding checks are hoisted: the
  valid output columns of a kernel tap are computed once per tap, and with stride 1 and
  OW == W (SAME-style 2-d convs) a tap's in-image rows are one contiguous memcpy. Small
  images (P < NCHW_GEMM_COLUMNS) are batched: their columns side by side in one sgemm, so
  BLAS gets a GEMM wide enough to run near peak; Y is then copied out of it. Many images
  (enough multiply-adds) are split between two threads, half each; there, big images
  stay one per sgemm, which writes Y in place. One image's sgemm runs in chunks of pixels
  sized for OpenBLAS's unpacked small-matrix kernel where it has one (blas.small_block:
  103-111 GFLOP/s on one thread for SqueezeNet's and LeNet's shapes, against 55-98
  packed); with it, images of 16 pixels or more are never batched. Where even 16 pixels
  are too many (hundreds of channels over a long K), chunks of SMALL_PIXELS pixels run in
  blocks of channels that fit.
* Conv, NHWC: the im2col rows are contiguous patches [(kernel tap, channel)], so one sgemm
  per group covers a whole chunk of images (Y rows are output pixels, ldc = M).
* ConvTranspose: per image and group one sgemm gives the columns, then col2im accumulates
  them into the (cropped) output in the reference's order; bias added last.
* MaxPool/AveragePool: windows clipped to the input (the reference pads with -inf / 0 and
  counts only input positions unless count_include_pad). Output rows and columns whose
  window lies inside the input run a fixed-size window with no clipping (constant trip
  counts the compiler unrolls and vectorizes); only the border ones clip.
* ConvGradient / ConvTransposeGradient: one template (`_conv_grad`), the latter seen as the
  convolution of dY that its gradient is. Per chunk of images and group: im2col (the
  forward's), then dW_g (+)= dY_g . cols^T as one sgemm over the whole chunk (NCHW: the
  chunk's dY rows gathered side by side first; images of NCHW_GEMM_COLUMNS pixels or more
  are chunks of one, read in place), then dX: Conv computes the columns' gradient
  W_g^T . dY_g with one sgemm and adds it back with col2im; ConvTranspose's dX is
  W_g . cols. Big problems split the images between two threads (own scratch, the second
  thread's dW added at the end). Where OpenBLAS has its small-matrix kernel, an sgemm too
  big for it runs as blocks of rows that fit it (blas.small_rows). db sums dY in double.
* MaxPoolGradient/AveragePoolGradient: direct loops over each output's window (clipped to
  the input): max hands dY to every input equal to the window's max, compared as float
  bits (no data-dependent branch, and none of the masked loads gcc 12 miscompiled: see
  the template's `pool_share`); windows that tile the input write dX once instead of
  zeroing and accumulating.
"""
from __future__ import annotations

import numpy as np

from c2compile.codegen import blas
from c2compile.codegen.cython.families.linear import _split_gemm, _split_rows
from c2compile.codegen.cython.lowering import KernelSpec, Unsupported, kernel, split_threads
from c2compile.ops.spatial import (
    _conv_check, _conv_transpose_as_conv, _conv_transpose_check, _geometry, _grad_outputs,
    _window_args)

# A column matrix (and NCHW's batched output) holds at most this many floats of scratch.
COLS_LIMIT = 1 << 22
# NCHW: images are batched into one sgemm until it has this many columns.
NCHW_GEMM_COLUMNS = 256
# One image per sgemm: split between two threads from this many multiply-adds on (8x below
# linear.py's SPLIT_MACS: the im2col is split too, and SqueezeNet at batch 1 is a chain of
# 1-5 M multiply-add convs). SqueezeNet interleaved A/B, quiet moments: 16 M 8.80 ms, 4 M
# 7.91, 2 M 7.83, 1 M 7.50; while a neighbour loads the host the smaller thresholds lose
# 5-8% (a 2-thread region waits for its slower thread), so the middle of the range.
ONE_IMAGE_SPLIT_MACS = 1 << 21
# One image per sgemm (NCHW): each thread's block of Y is filled with the bias, computed
# and Relu'd this many pixels at a time, while the chunk is in cache. SqueezeNet's conv1
# (12321 pixels x 64 channels, K = 27), interleaved: 0.47 ms whole, 0.35 ms from 128 to
# 512 pixels a chunk (W_g is re-packed per chunk: 1/PIXEL_CHUNK of the work).
PIXEL_CHUNK = 512
# One image per sgemm, too many output channels for OpenBLAS's small-matrix kernel to take
# even 16 pixels: pixel chunks of this size, each in blocks of channels that fit it. Single
# thread, 169 pixels x 128 channels over 576: 64 x 24 blocks 112 GFLOP/s, 32 x 54 111,
# 16 x 104 110, 128 x 8 106 (unblocked, packed: 92).
SMALL_PIXELS = 64
# Conv gradients: a chunk's column matrix holds at most this many floats (1 MiB: it is
# written by im2col, read by the dW sgemm, overwritten by dX's and read by col2im, so it
# should stay in cache).
GRAD_COLS = 1 << 18


def _float32_only(k: KernelSpec) -> None:
    for b in k.ins + k.outs:
        if b.ctype != "float":
            raise Unsupported(f"{k.op.type}: float32 only (got {b.dtype})")


def _axes3(g) -> dict:
    """The geometry as 3 spatial axes (d, h, w), leading axes of a 1-/2-d op of size 1."""
    nd = g.nd
    fill = lambda vals, v: (v,) * (3 - nd) + tuple(int(x) for x in vals)  # noqa: E731
    (D, H, W), (KD, KH, KW) = fill(g.size, 1), fill(g.kernel, 1)
    (SD, SH, SW), (DD, DH, DW) = fill(g.stride, 1), fill(g.dilation, 1)
    (PD, PH, PW), (OD, OH, OW) = fill(g.pad_head, 0), fill(g.out, 1)
    return dict(nd=nd, D=D, H=H, W=W, KD=KD, KH=KH, KW=KW, SD=SD, SH=SH, SW=SW,
                DD=DD, DH=DH, DW=DW, PD=PD, PH=PH, PW=PW, OD=OD, OH=OH, OW=OW,
                S=D * H * W, K=KD * KH * KW, P=OD * OH * OW)


def _interior(n_out: int, stride: int, pad: int, k: int, dil: int, size: int) -> tuple[int, int]:
    """[a, b): the outputs of one axis whose whole window lies inside the input."""
    a = max(0, -(-pad // stride))                       # o * s - pad >= 0
    last = size - 1 + pad - (k - 1) * dil               # o * s - pad + (k-1) d <= size - 1
    b = min(n_out, last // stride + 1) if last >= 0 else 0
    return a, max(a, b)


def _direct(v: dict, g) -> bool:
    """1x1, stride 1, no padding: the input already is the column matrix."""
    return v["K"] == 1 and v["P"] == v["S"] and _nopad(g)


def _nopad(g) -> bool:
    """No padding on any side: every kernel tap of every output lands inside the input."""
    return not any(g.pad_head) and not any(g.pad_tail)


def _flat(v: dict) -> bool:
    """Stride 1 and OW == W (2-d): each tap's in-image rows are one contiguous run."""
    return v["nd"] == 2 and v["SH"] == 1 and v["SW"] == 1 and v["OW"] == v["W"]


@kernel("Conv", "Conv1D", "Conv2D", "Conv3D", template="spatial.pyx.j2", macro="conv",
        epilogues=("Relu",))
def conv(k: KernelSpec) -> None:
    _float32_only(k)
    wa = _window_args(k.op)
    g = _geometry(k.op, wa, k.ins[0].shape)
    x, w = k.ins[0].shape, k.ins[1].shape
    G, N, M = wa.group, x[0], w[0]
    C = x[-1] if wa.channels_last else x[1]
    v = _axes3(g)
    v.update(N=N, C=C, M=M, G=G, Cg=C // G, Mg=M // G, bias=len(k.ins) == 3,
             nhwc=wa.channels_last, grad=False)
    v["CK"] = v["Cg"] * v["K"]
    v["direct"] = _direct(v, g)
    v["nopad"] = _nopad(g)
    if wa.channels_last:
        # images per sgemm: the column matrix of a chunk must fit the scratch limit
        per_image = v["P"] * v["CK"]
        v["NB"] = N if v["direct"] else max(1, min(N, COLS_LIMIT // max(per_image, 1)))
        v["split"] = 0
        if not v["direct"]:
            k.scratch_buf(v["NB"] * per_image)
    else:
        # small images: several side by side in one sgemm (a narrow GEMM runs far below
        # peak), within the scratch limit; then Y is copied out of Z image by image
        fit = COLS_LIMIT // max(v["P"] * max(v["CK"], v["Mg"]), 1)
        nb = min(N, -(-NCHW_GEMM_COLUMNS // v["P"]), fit)
        small = blas.small_block("N", "N", v["Mg"], v["CK"])
        if v["P"] >= 16 and small:
            nb = 1  # images of 16 pixels or more run at full speed through the small kernel
        # many images: two threads take half the images each (own scratch), as the
        # gradients do (LeNet's conv1: 576 pixels, 0.6 -> 0.4 ms at batch 64, against the
        # one-image path's split pixels). Small images batch at least two per sgemm;
        # images of NCHW_GEMM_COLUMNS pixels or more stay one per sgemm, written straight
        # into Y over its bias (LeNet's conv1: 0.29 -> 0.26 ms, no Z to copy out).
        split = _split_rows(N, v["P"] * M, v["CK"]) if min(N // 2, fit) >= 2 else 0
        if split and v["P"] < NCHW_GEMM_COLUMNS and nb > 1:
            nb = min(max(nb, 2), N - split)
        v["NB"] = max(nb, 1)
        v["LD"] = v["NB"] * v["P"]
        v["flat"] = _flat(v)
        v["split"] = split
        v["PC"] = small or PIXEL_CHUNK
        v["CB"] = 0  # output channels per sgemm (0: all of a thread's)
        v["gsplit"] = None  # one image's GEMM is split below, if at all
        if v["NB"] > 1 or split:
            threads = 1 + bool(split)
            if v["NB"] > 1:
                v["direct"] = False  # the images' columns are gathered side by side
            if not v["direct"]:
                v["cols"] = k.scratch_buf(threads * v["CK"] * v["LD"]).name
            if v["NB"] > 1:
                v["z"] = k.scratch_buf(threads * v["Mg"] * v["LD"]).name
        else:
            # One image per sgemm: a big one (ONE_IMAGE_SPLIT_MACS) is split between two
            # threads as linear.py's GEMMs are (single-threaded OpenBLAS), halving the bigger
            # operand: its output pixels (cols) or its output channels (W_g; SqueezeNet's
            # 13x13 layers, where W_g is 2-6x the column matrix). Its im2col is split too.
            split = _split_gemm(v["P"], v["Mg"], v["CK"], ONE_IMAGE_SPLIT_MACS)
            v["gsplit"] = split and ({"rows": "pixels", "cols": "channels"}[split[0]], split[1])
            if split and split[0] == "cols":  # each thread's sgemm has half the channels
                small = blas.small_block("N", "N", v["Mg"] - split[1], v["CK"])
                v["PC"] = small or PIXEL_CHUNK
            if not small:
                # too many channels for even 16 pixels: blocks of SMALL_PIXELS pixels by as
                # many channels as fit (SqueezeNet's conv10 and fire8/9 expand3x3, per
                # thread, one thread: 169x500x512 99 -> 111 GFLOP/s in 64x24 blocks,
                # 169x128x576 92 -> 112)
                cb = blas.small_block("N", "N", SMALL_PIXELS, v["CK"], columns=True)
                if cb:
                    v["PC"], v["CB"] = SMALL_PIXELS, cb
            if not v["direct"]:
                v["cols"] = k.scratch_buf(v["CK"] * v["P"]).name
    k.vars.update(v)


@kernel("ConvTranspose", template="spatial.pyx.j2", macro="conv_transpose")
def conv_transpose(k: KernelSpec) -> None:
    _float32_only(k)
    wa = _window_args(k.op, transpose=True)
    x, w = k.ins[0].shape, k.ins[1].shape
    N, (OH, OW), C, pads = _conv_transpose_check(k.op, wa, x, w, None)
    G = wa.group
    H, W = (x[1], x[2]) if wa.channels_last else (x[2], x[3])
    M = x[-1] if wa.channels_last else x[1]
    KH, KW = wa.kernel
    SH, SW = wa.stride or (1, 1)
    v = dict(N=N, M=M, C=C, G=G, Mg=M // G, Cg=C // G, H=H, W=W, OH=OH, OW=OW, KH=KH, KW=KW,
             SH=SH, SW=SW, PT=pads[0], PL=pads[1], bias=len(k.ins) == 3,
             nhwc=wa.channels_last)
    v["K"] = KH * KW
    v["CK"] = v["Cg"] * v["K"]
    k.scratch_buf(v["CK"] * H * W)
    k.vars.update(v)


def _conv_grad(k: KernelSpec, g, C: int, M: int, transpose: bool) -> None:
    """Both conv gradients as one convolution with geometry `g` over an image tensor `img`
    (C channels) whose output gradient `dyt` has M channels and filter W (i1):
    dW_g = sum over images of dyt_g . cols(img_g)^T. ConvGradient: img = X, dyt = dY,
    dX = col2im(W_g^T . dY_g). ConvTransposeGradient: img = dY, dyt = X, dX = W_g . cols
    (`_conv_transpose_as_conv`). db sums i2 (dY) over images and positions."""
    _float32_only(k)
    wa = _window_args(k.op, transpose=transpose)
    bias, dx = _grad_outputs(k.op)
    G, N = wa.group, k.ins[0].shape[0]
    v = _axes3(g)
    v.update(N=N, C=C, M=M, G=G, Cg=C // G, Mg=M // G, nhwc=wa.channels_last, grad=True,
             transpose=transpose, bias=bias, dx=dx, dxo=f"o{1 + bias}",
             img="i2" if transpose else "i0", dyt="i0" if transpose else "i2",
             db_c=C if transpose else M, db_p=v["S"] if transpose else v["P"],
             name="ConvTransposeGradient" if transpose else "ConvGradient")
    v["CK"] = v["Cg"] * v["K"]
    v["direct"] = wa.channels_last and _direct(v, g)
    v["flat"] = _flat(v)
    v["nopad"] = _nopad(g)
    # Two threads take half the images each (own scratch, own dW partial summed at the
    # end) when the GEMMs are big enough, as FC splits its rows.
    v["split"] = _split_rows(N, v["P"] * M, v["CK"] * (2 if dx else 1))
    per_thread = max(v["split"], N - v["split"]) if v["split"] else N
    threads = 2 if v["split"] else 1
    rows = v["CK"] if wa.channels_last else max(v["CK"], v["Mg"])
    v["NB"] = max(1, min(per_thread, GRAD_COLS // max(v["P"] * rows, 1)))
    if not wa.channels_last and v["P"] >= NCHW_GEMM_COLUMNS:
        # Images with enough pixels get their own sgemms, as the forward's do: no gather of
        # dY's rows, and OpenBLAS runs LeNet's conv1 (576 pixels) 2x faster on 18 images one
        # at a time than on one sgemm over all 18 (dW: 20x25 over K = 576 vs 10368).
        v["NB"] = 1
    v["LD"] = v["NB"] * v["P"]
    # sgemms too big for OpenBLAS's small-matrix kernel run as blocks of rows that fit it
    # (LeNet's conv2, one thread, whole call against blocks: dW 500x50x512 ("T", "N") 82 ->
    # 107 GFLOP/s in blocks of 24 rows, dcols 512x500x50 ("N", "T") 93 -> 110 in 32).
    rows = blas.small_rows
    if wa.channels_last:
        v["rows_dw"], v["rows_dx"] = rows("N", "T", v["CK"], v["Mg"], v["LD"]), 0
    else:
        v["rows_dw"] = rows("T", "N", v["CK"], v["Mg"], v["LD"])
        v["rows_dx"] = (rows("N", "N", v["LD"], v["Mg"], v["CK"]) if transpose
                        else rows("N", "T", v["LD"], v["CK"], v["Mg"])) if dx else 0
    if not v["direct"]:
        v["cols"] = k.scratch_buf(threads * v["CK"] * v["LD"]).name
    if not wa.channels_last and v["NB"] > 1:  # dyt's rows of a chunk side by side (also ConvT's dX_g)
        v["dyb"] = k.scratch_buf(threads * v["Mg"] * v["LD"]).name
    if v["split"]:
        v["dw1"] = k.scratch_buf(k.outs[0].size).name  # the second thread's dW
    if bias and wa.channels_last:
        v["dbacc"] = k.scratch_buf(v["db_c"], np.float64).name
    v["db_threads"] = split_threads(N * v["db_c"] * v["db_p"], v["db_c"])
    k.vars.update(v)


@kernel("ConvGradient", "Conv1DGradient", "Conv2DGradient", "Conv3DGradient",
        template="spatial.pyx.j2", macro="conv_grad")
def conv_gradient(k: KernelSpec) -> None:
    wa = _window_args(k.op)
    x, w = k.ins[0].shape, k.ins[1].shape
    g, M = _conv_check(k.op, wa, x, w, None)
    _conv_grad(k, g, x[-1] if wa.channels_last else x[1], M, transpose=False)


@kernel("ConvTransposeGradient", template="spatial.pyx.j2", macro="conv_grad")
def conv_transpose_gradient(k: KernelSpec) -> None:
    wa = _window_args(k.op, transpose=True)
    x = k.ins[0].shape
    g, C = _conv_transpose_as_conv(k.op, wa, x, k.ins[1].shape)
    _conv_grad(k, g, C, x[-1] if wa.channels_last else x[1], transpose=True)


def _pool_vars(k: KernelSpec, avg: bool) -> None:
    _float32_only(k)
    wa = _window_args(k.op, pool=True)
    x = k.ins[0].shape
    g = _geometry(k.op, wa, x, pool=True)
    v = _axes3(g)
    v.update(N=x[0], C=x[-1] if wa.channels_last else x[1], nhwc=wa.channels_last, avg=avg,
             global_=wa.global_pooling,
             include_pad=bool(getattr(k.args, "count_include_pad", False)))
    # interior output columns (whole window inside the input row): no clipping there
    v["A"], v["B"] = _interior(v["OW"], v["SW"], v["PW"], v["KW"], 1, v["W"])
    # interior output rows (all the window's rows inside the input): a constant row loop
    v["HA"], v["HB"] = _interior(v["OH"], v["SH"], v["PH"], v["KH"], 1, v["H"])
    planes = v["N"] * v["C"]
    # NCHW: two threads take half the (image, channel) planes each, when big enough
    v["threads"] = 1 if v["nhwc"] or v["global_"] else split_threads(planes * v["S"], planes)
    k.vars.update(v)


@kernel("MaxPool", "MaxPool1D", "MaxPool2D", "MaxPool3D", template="spatial.pyx.j2",
        macro="pool")
def max_pool(k: KernelSpec) -> None:
    _pool_vars(k, avg=False)


@kernel("AveragePool", "AveragePool1D", "AveragePool2D", "AveragePool3D",
        template="spatial.pyx.j2", macro="pool")
def average_pool(k: KernelSpec) -> None:
    _pool_vars(k, avg=True)
    if k.vars["global_"] and k.vars["nhwc"]:
        k.scratch_buf(k.vars["C"], np.float64)  # per-channel sums of one image


@kernel("MaxPoolGradient", "MaxPool1DGradient", "MaxPool2DGradient", "MaxPool3DGradient",
        "AveragePoolGradient", "AveragePool1DGradient", "AveragePool2DGradient",
        "AveragePool3DGradient", template="spatial.pyx.j2", macro="pool_grad")
def pool_gradient(k: KernelSpec) -> None:
    avg = k.op.type.startswith("Average")
    _pool_vars(k, avg=avg)
    v = k.vars
    if avg and not v["nhwc"] and not v["global_"]:
        v["share"] = k.scratch_buf(v["threads"] * v["P"]).name  # a plane's dY x factor, per thread
    # the windows tile the input exactly: every input position is in exactly one window
    v["tiled"] = all(v["S" + a] == v["K" + a] and v["P" + a] == 0 and
                     v["O" + a] * v["S" + a] == v[a] for a in "DHW")
