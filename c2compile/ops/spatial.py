"""Spatial ops: Conv, ConvTranspose, MaxPool, AveragePool (and their 1D/2D/3D aliases).

Argument parsing follows Caffe2's ConvPoolOpBase / ConvTransposeUnpoolBase, written once
here (`_window_args`, `_geometry`):

* `kernels`/`strides`/`dilations`/`pads` are lists, one entry per spatial axis (`pads`:
  all heads, then all tails, so 2-D is t, l, b, r). The single-value forms `kernel`,
  `stride`, `dilation`, `pad` and the `*_h`/`*_w` (and `pad_t/l/b/r`) forms are 2-D only,
  as in Caffe2. Giving two forms of one argument, or half of an `_h`/`_w` pair, is an
  ArgumentError (Caffe2 silently preferred one form or ignored the half pair).
* `legacy_pad`: 0 NOTSET (explicit pads, floor), 1 VALID, 2 SAME (TensorFlow style: the
  odd pad goes to the tail; a negative pad crops, as Caffe2 does), 3 CAFFE_LEGACY_POOLING
  (Caffe's ceil rule, using only the head pads; the tail pad is derived).
* `order`: "NCHW" (filter M x C/group x k...) or "NHWC" (filter M x k... x C/group).

Caffe2's CPU kernels take float32 only; so do these. Nothing runs in place.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from c2compile.errors import ArgumentError
from c2compile.ops.schema import Arg, TensorType, alias, op, require_dtype

from numpy.lib.stride_tricks import sliding_window_view

NOTSET, VALID, SAME, CAFFE_LEGACY_POOLING = 0, 1, 2, 3
_LEGACY_NAMES = {NOTSET: "NOTSET", VALID: "VALID", SAME: "SAME",
                 CAFFE_LEGACY_POOLING: "CAFFE_LEGACY_POOLING"}
_F32 = np.dtype(np.float32)


# ----------------------------------------------------------------------------- arguments

def _geometry_args(*, dilation=True, adj=False, global_pooling=False, group=True,
                   count_include_pad=False, no_bias=False) -> list[Arg]:
    args = [
        Arg("order", "str", "NCHW", "NCHW or NHWC"),
        Arg("kernel", "int", None), Arg("kernels", "ints", None),
        Arg("kernel_h", "int", None), Arg("kernel_w", "int", None),
        Arg("stride", "int", None), Arg("strides", "ints", None),
        Arg("stride_h", "int", None), Arg("stride_w", "int", None),
        Arg("pad", "int", None), Arg("pads", "ints", None),
        Arg("pad_t", "int", None), Arg("pad_l", "int", None),
        Arg("pad_b", "int", None), Arg("pad_r", "int", None),
        Arg("legacy_pad", "int", NOTSET, "0 NOTSET, 1 VALID, 2 SAME, 3 CAFFE_LEGACY_POOLING"),
    ]
    if dilation:
        args += [Arg("dilation", "int", None), Arg("dilations", "ints", None),
                 Arg("dilation_h", "int", None), Arg("dilation_w", "int", None)]
    if adj:
        args += [Arg("adj", "int", None), Arg("adjs", "ints", None),
                 Arg("adj_h", "int", None), Arg("adj_w", "int", None)]
    if global_pooling:
        args.append(Arg("global_pooling", "bool", False))
    if group:
        args.append(Arg("group", "int", 1))
    if count_include_pad:
        args.append(Arg("count_include_pad", "bool", False))
    if no_bias:
        args.append(Arg("no_bias", "bool", False,
                        "accepted for nets that carry it; must agree with the inputs"))
    return args


def _fail_arg(ctx, message: str):
    ctx.fail(message, cls=ArgumentError)


def _per_axis(ctx, list_name: str, single: str | None, pair: tuple[str, ...]):
    """One spatial argument given in any of its Caffe2 forms, or None if absent.

    `list_name` (a list), `single` (one value for both axes of a 2-D op) or `pair`
    (per-axis values of a 2-D op: kernel_h/kernel_w, pad_t/pad_l/pad_b/pad_r).
    """
    given = [n for n in (list_name, single) if n and ctx.has(n)]
    pair_given = [n for n in pair if ctx.has(n)]
    if pair_given and len(pair_given) != len(pair):
        missing = [n for n in pair if n not in pair_given]
        _fail_arg(ctx, f"{', '.join(pair_given)} given without {', '.join(missing)}: "
                       f"set all of {', '.join(pair)} (or '{list_name}')")
    if pair_given:
        given.append("/".join(pair))
    if len(given) > 1:
        _fail_arg(ctx, f"{' and '.join(repr(g) for g in given)} both set the same thing; "
                       "give only one of them")
    if not given:
        return None
    if ctx.has(list_name):
        return [int(v) for v in ctx.arg(list_name)]
    if single and ctx.has(single):
        return [int(ctx.arg(single))] * (len(pair) if pair else 2)
    return [int(ctx.arg(n)) for n in pair]


@dataclasses.dataclass(frozen=True)
class _WindowArgs:
    """The shape-independent part of ConvPoolOpBase's arguments, validated."""
    channels_last: bool
    kernel: tuple | None         # None: global pooling takes the input's spatial size
    stride: tuple | None         # None: default 1 on every axis (rank known later)
    dilation: tuple | None
    pads: tuple | None           # heads then tails
    adj: tuple | None
    legacy_pad: int
    global_pooling: bool
    group: int


def _window_args(ctx, *, pool: bool = False, transpose: bool = False) -> _WindowArgs:
    a = ctx.args
    order = a.order
    if order not in ("NCHW", "NHWC"):
        _fail_arg(ctx, f"order={order!r}: must be 'NCHW' or 'NHWC'")
    legacy = int(a.legacy_pad)
    if legacy not in _LEGACY_NAMES:
        _fail_arg(ctx, f"legacy_pad={legacy}: must be 0 (NOTSET), 1 (VALID), 2 (SAME) or "
                       "3 (CAFFE_LEGACY_POOLING)")
    kernel = _per_axis(ctx, "kernels", "kernel", ("kernel_h", "kernel_w"))
    stride = _per_axis(ctx, "strides", "stride", ("stride_h", "stride_w"))
    pads = _per_axis(ctx, "pads", "pad", ("pad_t", "pad_l", "pad_b", "pad_r"))
    dilation = adj = None
    if not transpose:
        dilation = _per_axis(ctx, "dilations", "dilation", ("dilation_h", "dilation_w"))
    else:
        adj = _per_axis(ctx, "adjs", "adj", ("adj_h", "adj_w"))
    global_pooling = bool(getattr(a, "global_pooling", False))
    group = int(getattr(a, "group", 1))

    if pads is not None and legacy in (VALID, SAME):
        _fail_arg(ctx, f"legacy_pad={legacy} ({_LEGACY_NAMES[legacy]}) computes the pads "
                       "itself; do not also give pad/pads")
    if global_pooling and not pool:
        _fail_arg(ctx, "global_pooling applies to pooling ops only")
    if group < 1:
        _fail_arg(ctx, f"group={group}: must be >= 1")
    if pool and group != 1:
        _fail_arg(ctx, f"group={group}: pooling has no groups (leave group at 1)")

    # Ranks of the list arguments must agree with the kernel's.
    if kernel is not None:
        nd = len(kernel)
        if nd == 0:
            _fail_arg(ctx, "kernels is empty")
        for name, vals, want in (("strides/stride", stride, nd),
                                 ("dilations/dilation", dilation, nd),
                                 ("adjs/adj", adj, nd), ("pads/pad", pads, 2 * nd)):
            if vals is not None and len(vals) != want:
                _fail_arg(ctx, f"{name} has {len(vals)} values for a {nd}-d kernel "
                               f"{kernel}; expected {want} (the single-value and _h/_w "
                               "forms are 2-d only)")
    if kernel is None and not global_pooling:
        _fail_arg(ctx, "the kernel size is required: set kernel, kernel_h and kernel_w, "
                       "or kernels")
    if kernel is not None and not global_pooling and any(k <= 0 for k in kernel):
        _fail_arg(ctx, f"kernel {kernel}: every kernel size must be > 0")
    if stride is not None and any(s <= 0 for s in stride):
        _fail_arg(ctx, f"stride {stride}: every stride must be > 0")
    if dilation is not None and any(d <= 0 for d in dilation):
        _fail_arg(ctx, f"dilation {dilation}: every dilation must be > 0")
    if pads is not None and any(p < 0 for p in pads):
        _fail_arg(ctx, f"pads {pads}: pads must be >= 0")
    if dilation is not None and any(d != 1 for d in dilation):
        if pool:
            _fail_arg(ctx, f"dilation {dilation}: Caffe2's pooling does not support dilation")
        if legacy == SAME:
            _fail_arg(ctx, f"dilation {dilation} cannot be combined with legacy_pad=2 (SAME)")
        if legacy == CAFFE_LEGACY_POOLING:
            _fail_arg(ctx, f"dilation {dilation} cannot be combined with legacy_pad=3 "
                           "(CAFFE_LEGACY_POOLING): its size rule ignores dilation")
    if legacy == CAFFE_LEGACY_POOLING and pads is not None:
        nd = len(pads) // 2
        if list(pads[:nd]) != list(pads[nd:]):
            _fail_arg(ctx, f"pads {pads}: legacy_pad=3 (CAFFE_LEGACY_POOLING) uses only the "
                           "head pads and derives the tail ones; give symmetric pads")
    if transpose:
        if legacy == CAFFE_LEGACY_POOLING:
            _fail_arg(ctx, "legacy_pad=3 (CAFFE_LEGACY_POOLING) is not supported by "
                           "ConvTranspose (Caffe2 aborts on it)")
        if adj is not None:
            if any(v < 0 for v in adj):
                _fail_arg(ctx, f"adj {adj}: must be >= 0")
            st = stride if stride is not None else [1] * len(adj)
            if any(v >= s for v, s in zip(adj, st)):
                # Caffe2 accepts adj == stride but then reads past its column buffer
                _fail_arg(ctx, f"adj {adj} must be smaller than stride {st}")
    if global_pooling:
        # Caffe2 overwrites the kernel with the input size (so _geometry ignores it), and
        # enforces that pads, strides and dilations are left at their defaults.
        if (stride is not None and any(s != 1 for s in stride)) or \
                (pads is not None and any(p != 0 for p in pads)) or \
                (dilation is not None and any(d != 1 for d in dilation)):
            _fail_arg(ctx, "with global_pooling, stride must be 1, pads 0 and dilation 1 "
                           f"(got stride {stride}, pads {pads}, dilation {dilation})")
    if pool and not global_pooling and pads is not None:
        nd = len(kernel)
        if any(pads[i] >= kernel[i] or pads[i + nd] >= kernel[i] for i in range(nd)):
            _fail_arg(ctx, f"pads {pads} must be smaller than the kernel {kernel} "
                           "(Caffe2's pooling enforces it)")
    tup = lambda v: None if v is None else tuple(v)  # noqa: E731
    return _WindowArgs(channels_last=order == "NHWC", kernel=tup(kernel), stride=tup(stride),
                       dilation=tup(dilation), pads=tup(pads), adj=tup(adj),
                       legacy_pad=legacy, global_pooling=global_pooling, group=group)


# ----------------------------------------------------------------------------- geometry

def _cdiv(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Per spatial axis: input size, kernel, stride, dilation, pads, output size."""
    channels_last: bool
    size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad_head: tuple   # may be negative (SAME crops)
    pad_tail: tuple
    out: tuple

    @property
    def nd(self) -> int:
        return len(self.size)

    @property
    def spatial_axes(self) -> tuple:
        return tuple(range(1, 1 + self.nd)) if self.channels_last else tuple(range(2, 2 + self.nd))

    @property
    def channel_axis(self) -> int:
        return -1 if self.channels_last else 1

    def output_shape(self, n: int, channels: int) -> tuple:
        if self.channels_last:
            return (n, *self.out, channels)
        return (n, channels, *self.out)


def _size_and_pad(ctx, legacy: int, size: int, k: int, s: int, d: int, head: int, tail: int):
    """Caffe2's ComputeSizeAndPad for one axis: (pad_head, pad_tail, out_size)."""
    dk = d * (k - 1) + 1
    if legacy == NOTSET:
        if size + head + tail < dk:
            return head, tail, 0
        return head, tail, (size + head + tail - dk) // s + 1
    if legacy == VALID:
        return 0, 0, _cdiv(size - dk, s) + 1
    if legacy == SAME:
        target = (size + s - 1) // s
        needed = (target - 1) * s + k - size
        head = _cdiv(needed, 2)
        return head, needed - head, _cdiv(size + needed - dk, s) + 1
    # CAFFE_LEGACY_POOLING: Caffe's ceil rule with the head pad on both sides, then the
    # last window must start inside the image (when padded); the tail pad follows.
    out = math.ceil((size + 2 * head - k) / s + 1)
    if head > 0 and (out - 1) * s >= size + head:
        out -= 1
    standard = int((size + 2 * head - k) / s + 1)
    if out < standard:  # only when pad >= kernel; Caffe2 raises ("should never happen")
        ctx.fail(f"legacy_pad=3 (CAFFE_LEGACY_POOLING) with pad {head} >= kernel {k}: the "
                 f"legacy size rule gives {out} outputs for an input of size {size}, fewer "
                 f"than the {standard} the pads allow (Caffe2 rejects this too)")
    return head, head + s * (out - standard), out


def _geometry(ctx, wa: _WindowArgs, x_shape, *, what="X", pool=False) -> _Geometry:
    """Output size and effective pads of a Conv/Pool for input shape `x_shape`."""
    ndim = len(x_shape)
    if wa.global_pooling:  # the input says how many spatial axes; any kernel is ignored
        nd = ndim - 2
    elif wa.kernel is not None:
        nd = len(wa.kernel)
    else:  # pragma: no cover - rejected in _window_args
        nd = 2
    if nd < 1 or nd > 3:
        ctx.fail(f"{what} has shape {list(x_shape)}: a {nd}-d {ctx.type} is not supported "
                 "(1 to 3 spatial axes)")
    if ndim != nd + 2:
        ctx.fail(f"{what} has shape {list(x_shape)} ({ndim}-d), but a {nd}-d kernel "
                 f"{list(wa.kernel)} needs a {nd + 2}-d input "
                 f"({'N, spatial..., C' if wa.channels_last else 'N, C, spatial...'})")
    sizes = tuple(x_shape[1:-1]) if wa.channels_last else tuple(x_shape[2:])
    channels = x_shape[-1] if wa.channels_last else x_shape[1]
    if channels < 1 or any(v < 1 for v in sizes):
        ctx.fail(f"{what} has shape {list(x_shape)}: channel and spatial sizes must be >= 1")
    stride = wa.stride or (1,) * nd
    dilation = wa.dilation or (1,) * nd
    pads = wa.pads or (0,) * (2 * nd)
    if wa.global_pooling:
        # Caffe2 overwrites the kernel with the input's spatial size, whatever kernel/kernels
        # say (Caffe2's pooling_test passes arbitrary kernels with global_pooling=True).
        if len(stride) != nd or len(pads) != 2 * nd:
            _fail_arg(ctx, f"strides/pads do not match the {nd}-d input {list(x_shape)}")
        return _Geometry(wa.channels_last, sizes, sizes, (1,) * nd, (1,) * nd,
                         (0,) * nd, (0,) * nd, (1,) * nd)
    heads, tails, outs = [], [], []
    for i in range(nd):
        h, t, o = _size_and_pad(ctx, wa.legacy_pad, sizes[i], wa.kernel[i], stride[i],
                                dilation[i], pads[i], pads[i + nd])
        dk = dilation[i] * (wa.kernel[i] - 1) + 1
        if o < 1 or (o - 1) * stride[i] + dk > sizes[i] + h + t:
            ctx.fail(f"{what} has shape {list(x_shape)}: the kernel {list(wa.kernel)} "
                     f"(dilation {list(dilation)}) does not fit spatial axis {i} of size "
                     f"{sizes[i]} with pads {pads[i]}/{pads[i + nd]}, stride {stride[i]}, "
                     f"legacy_pad {_LEGACY_NAMES[wa.legacy_pad]}")
        if pool and (o - 1) * stride[i] - h >= sizes[i]:
            ctx.fail(f"{what} has shape {list(x_shape)}: with legacy_pad=3 the last pooling "
                     f"window on spatial axis {i} (size {sizes[i]}, kernel {wa.kernel[i]}, "
                     f"stride {stride[i]}) starts past the input and would pool nothing "
                     "(Caffe2 returns garbage there)")
        heads.append(h)
        tails.append(t)
        outs.append(o)
    return _Geometry(wa.channels_last, sizes, tuple(wa.kernel), tuple(stride),
                     tuple(dilation), tuple(heads), tuple(tails), tuple(outs))


def _pad_crop(x: np.ndarray, axes, heads, tails, value) -> np.ndarray:
    """Pad (positive) or crop (negative) `x` along `axes`; a view when nothing is padded."""
    crop = [slice(None)] * x.ndim
    widths = [(0, 0)] * x.ndim
    for ax, h, t in zip(axes, heads, tails):
        crop[ax] = slice(max(-h, 0), x.shape[ax] - max(-t, 0))
        widths[ax] = (max(h, 0), max(t, 0))
    x = x[tuple(crop)]
    if any(w != (0, 0) for w in widths):
        x = np.pad(x, widths, mode="constant", constant_values=value)
    return x


def _windowed_input(x: np.ndarray, g: _Geometry, value, axes) -> np.ndarray:
    """`x` padded/cropped along its spatial `axes` so that window j of axis i starts at
    j * stride exactly and the last window ends at the array's end."""
    tails = [(o - 1) * s + d * (k - 1) + 1 - n - h for o, s, d, k, n, h in
             zip(g.out, g.stride, g.dilation, g.kernel, g.size, g.pad_head)]
    return _pad_crop(x, axes, g.pad_head, tails, value)


# ----------------------------------------------------------------------------- Conv

def _conv_check(ctx, wa: _WindowArgs, xs, ws, bs):
    """Validate Conv shapes; returns (geometry, M). Shapes may be None (unknown)."""
    if xs is None:
        return None, None
    g = _geometry(ctx, wa, xs, what=f"X '{ctx.inputs[0]}'")
    if ws is None:
        return g, None
    G = wa.group
    C = xs[-1] if wa.channels_last else xs[1]
    if len(ws) != len(xs):
        ctx.fail(f"filter '{ctx.inputs[1]}' has shape {list(ws)}; for input {list(xs)} it "
                 f"must be {len(xs)}-d: "
                 f"{'M x kernel... x C/group' if wa.channels_last else 'M x C/group x kernel...'}")
    M = ws[0]
    fk = tuple(ws[1:-1]) if wa.channels_last else tuple(ws[2:])
    fc = ws[-1] if wa.channels_last else ws[1]
    if C % G:
        ctx.fail(f"X '{ctx.inputs[0]}' has {C} channels, not divisible by group={G}")
    if M % G or M < 1:
        ctx.fail(f"filter '{ctx.inputs[1]}' has {M} output channels (shape {list(ws)}), "
                 f"not a positive multiple of group={G}")
    if fc * G != C:
        ctx.fail(f"filter '{ctx.inputs[1]}' has shape {list(ws)}: {fc} input channels per "
                 f"group x group={G} != the {C} channels of X '{ctx.inputs[0]}' {list(xs)}")
    if fk != tuple(g.kernel):
        ctx.fail(f"filter '{ctx.inputs[1]}' has spatial shape {list(fk)} (shape {list(ws)}), "
                 f"but the kernel argument says {list(g.kernel)}")
    if ctx.num_inputs == 3 and bs is not None and tuple(bs) != (M,):
        ctx.fail(f"bias '{ctx.inputs[2]}' has shape {list(bs)}; expected [{M}] (one per "
                 "output channel)")
    return g, M


def _check_no_bias(ctx):
    if ctx.args.no_bias and ctx.num_inputs == 3:
        _fail_arg(ctx, f"no_bias=1 but a bias input '{ctx.inputs[2]}' is given")


def _conv_infer(ctx, *ins: TensorType):
    wa = _window_args(ctx)
    _check_no_bias(ctx)
    for i, t in enumerate(ins):
        require_dtype(ctx, t, [np.float32], what=f"input {i} '{ctx.inputs[i]}'")
    g, M = _conv_check(ctx, wa, *(t.shape for t in ins), *([None] * (3 - len(ins))))
    if g is None or M is None:
        return [TensorType(None, _F32)]
    n = ins[0].shape[0]
    return [TensorType(g.output_shape(n, M), _F32)]


def _conv_forward(x: np.ndarray, w: np.ndarray, g: _Geometry, G: int) -> np.ndarray:
    """Grouped N-d convolution by im2col + one batched GEMM (float32 accumulation)."""
    nd = g.nd
    if g.channels_last:  # to channels-first views; the im2col copy below absorbs it
        x = np.moveaxis(x, -1, 1)
        w = np.moveaxis(w, -1, 1)
    N, C = x.shape[:2]
    M = w.shape[0]
    Cg, Mg = C // G, M // G
    xp = _windowed_input(x, g, 0, tuple(range(2, 2 + nd)))
    dk = tuple(d * (k - 1) + 1 for d, k in zip(g.dilation, g.kernel))
    win = sliding_window_view(xp, dk, axis=tuple(range(2, 2 + nd)))
    sel = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in g.stride) + \
        tuple(slice(None, None, d) for d in g.dilation)
    win = win[sel]  # (N, C, *out, *kernel)
    P = int(np.prod(g.out, dtype=np.int64))
    K = int(np.prod(g.kernel, dtype=np.int64))
    win = win.reshape((N, G, Cg) + g.out + g.kernel)
    order = (0, 1) + tuple(range(3, 3 + nd)) + (2,) + tuple(range(3 + nd, 3 + 2 * nd))
    cols = win.transpose(order).reshape(N, G, P, Cg * K)
    wmat = w.reshape(G, Mg, Cg * K).transpose(0, 2, 1)
    y = np.matmul(cols, wmat)  # (N, G, P, Mg)
    if g.channels_last:
        return y.transpose(0, 2, 1, 3).reshape((N,) + g.out + (M,))
    return y.transpose(0, 1, 3, 2).reshape((N, M) + g.out)


@op("Conv", inputs=(2, 3), outputs=1, args=_geometry_args(global_pooling=True, no_bias=True),
    infer=_conv_infer)
def conv(ctx, X, filter, bias=None):
    """N-d convolution (1 to 3 spatial axes), groups, dilation, optional bias."""
    wa = _window_args(ctx)
    _check_no_bias(ctx)
    for i, a in enumerate((X, filter, bias)[:ctx.num_inputs]):
        require_dtype(ctx, TensorType(a.shape, a.dtype), [np.float32],
                      what=f"input {i} '{ctx.inputs[i]}'")
    g, M = _conv_check(ctx, wa, X.shape, filter.shape,
                       None if bias is None else bias.shape)
    if X.shape[0] == 0:
        return np.zeros(g.output_shape(0, M), _F32)
    y = _conv_forward(X, filter, g, wa.group)
    if bias is not None:
        y += bias if g.channels_last else bias.reshape((M,) + (1,) * g.nd)
    return np.ascontiguousarray(y, dtype=_F32)


# ----------------------------------------------------------------------------- ConvTranspose

def _conv_transpose_check(ctx, wa: _WindowArgs, xs, ws, bs):
    """Validate ConvTranspose shapes; returns (N, out sizes, output channels, pads)."""
    if xs is None:
        return None
    nd = len(wa.kernel)
    if nd != 2 or len(xs) != 4:
        ctx.fail(f"X '{ctx.inputs[0]}' has shape {list(xs)} and the kernel is "
                 f"{list(wa.kernel)}: Caffe2's ConvTranspose is 2-d only (4-d input)")
    sizes = tuple(xs[1:3]) if wa.channels_last else tuple(xs[2:4])
    M = xs[-1] if wa.channels_last else xs[1]
    if M < 1 or any(v < 1 for v in sizes):
        ctx.fail(f"X '{ctx.inputs[0]}' has shape {list(xs)}: channel and spatial sizes "
                 "must be >= 1")
    if ws is None:
        return None
    G = wa.group
    if len(ws) != 4:
        ctx.fail(f"filter '{ctx.inputs[1]}' has shape {list(ws)}; it must be 4-d: "
                 f"{'M x kH x kW x C/group' if wa.channels_last else 'M x C/group x kH x kW'}")
    fk = tuple(ws[1:3]) if wa.channels_last else tuple(ws[2:4])
    Cg = ws[3] if wa.channels_last else ws[1]
    if ws[0] != M:
        ctx.fail(f"filter '{ctx.inputs[1]}' has shape {list(ws)}: its first dimension must "
                 f"be the {M} input channels of X '{ctx.inputs[0]}' {list(xs)}")
    if M % G:
        ctx.fail(f"X '{ctx.inputs[0]}' has {M} channels, not divisible by group={G}")
    if Cg < 1:
        ctx.fail(f"filter '{ctx.inputs[1]}' has shape {list(ws)}: no output channels")
    if fk != tuple(wa.kernel):
        ctx.fail(f"filter '{ctx.inputs[1]}' has spatial shape {list(fk)} (shape {list(ws)}), "
                 f"but the kernel argument says {list(wa.kernel)}")
    C = Cg * G
    if ctx.num_inputs == 3 and bs is not None and tuple(bs) != (C,):
        ctx.fail(f"bias '{ctx.inputs[2]}' has shape {list(bs)}; expected [{C}] (one per "
                 "output channel)")
    stride = wa.stride or (1, 1)
    adj = wa.adj or (0, 0)
    pads = (0, 0, 0, 0) if wa.legacy_pad in (VALID, SAME) else (wa.pads or (0, 0, 0, 0))
    outs = []
    for i in range(2):
        o = (sizes[i] - 1) * stride[i] + wa.kernel[i] + adj[i] - pads[i] - pads[i + 2]
        if o < 1:
            ctx.fail(f"X '{ctx.inputs[0]}' has shape {list(xs)}: pads {list(pads)} crop away "
                     f"all of spatial axis {i} (full size "
                     f"{(sizes[i] - 1) * stride[i] + wa.kernel[i] + adj[i]})")
        outs.append(o)
    return xs[0], tuple(outs), C, pads


def _conv_transpose_infer(ctx, *ins: TensorType):
    wa = _window_args(ctx, transpose=True)
    _check_no_bias(ctx)
    for i, t in enumerate(ins):
        require_dtype(ctx, t, [np.float32], what=f"input {i} '{ctx.inputs[i]}'")
    r = _conv_transpose_check(ctx, wa, *(t.shape for t in ins), *([None] * (3 - len(ins))))
    if r is None:
        return [TensorType(None, _F32)]
    n, outs, C, _ = r
    shape = (n, *outs, C) if wa.channels_last else (n, C, *outs)
    return [TensorType(shape, _F32)]


@op("ConvTranspose", inputs=(2, 3), outputs=1,
    args=_geometry_args(dilation=False, adj=True, no_bias=True) + [
        Arg("no_gradient_to_input", "bool", False,
            "read by the gradient only (ConvTransposeGradient then skips dX)")],
    infer=_conv_transpose_infer)
def conv_transpose(ctx, X, filter, bias=None):
    """2-d transposed convolution with groups, adj (output padding) and optional bias."""
    wa = _window_args(ctx, transpose=True)
    _check_no_bias(ctx)
    for i, a in enumerate((X, filter, bias)[:ctx.num_inputs]):
        require_dtype(ctx, TensorType(a.shape, a.dtype), [np.float32],
                      what=f"input {i} '{ctx.inputs[i]}'")
    N, outs, C, pads = _conv_transpose_check(ctx, wa, X.shape, filter.shape,
                                             None if bias is None else bias.shape)
    G = wa.group
    kh, kw = wa.kernel
    sh, sw = wa.stride or (1, 1)
    ah, aw = wa.adj or (0, 0)
    x = np.moveaxis(X, -1, 1) if wa.channels_last else X
    w = np.moveaxis(filter, -1, 1) if wa.channels_last else filter  # (M, C/G, kh, kw)
    M, H, W = x.shape[1:]
    Mg, Cg = M // G, C // G
    Hf, Wf = (H - 1) * sh + kh + ah, (W - 1) * sw + kw + aw
    full = np.zeros((N, C, Hf, Wf), _F32)
    if N:
        xg = x.reshape(N, G, Mg, H * W)
        wg = w.reshape(G, Mg, Cg * kh * kw).transpose(0, 2, 1)
        cols = np.matmul(wg, xg).reshape(N, C, kh, kw, H, W)
        for i in range(kh):
            for j in range(kw):
                full[:, :, i:i + (H - 1) * sh + 1:sh, j:j + (W - 1) * sw + 1:sw] += cols[:, :, i, j]
    y = full[:, :, pads[0]:Hf - pads[2], pads[1]:Wf - pads[3]]
    if bias is not None:
        y = y + bias.reshape(C, 1, 1)
    if wa.channels_last:
        y = np.moveaxis(y, 1, -1)
    return np.ascontiguousarray(y, dtype=_F32)


# ----------------------------------------------------------------------------- pooling

def _pool_infer(ctx, X: TensorType):
    wa = _window_args(ctx, pool=True)
    require_dtype(ctx, X, [np.float32], what=f"X '{ctx.inputs[0]}'")
    if X.shape is None:
        return [TensorType(None, _F32)]
    g = _geometry(ctx, wa, X.shape, what=f"X '{ctx.inputs[0]}'", pool=True)
    return [TensorType(g.output_shape(X.shape[0], X.shape[g.channel_axis]), _F32)]


def _pool(ctx, X: np.ndarray, mode: str) -> np.ndarray:
    wa = _window_args(ctx, pool=True)
    require_dtype(ctx, TensorType(X.shape, X.dtype), [np.float32],
                  what=f"X '{ctx.inputs[0]}'")
    g = _geometry(ctx, wa, X.shape, what=f"X '{ctx.inputs[0]}'", pool=True)
    axes = g.spatial_axes
    out_shape = g.output_shape(X.shape[0], X.shape[g.channel_axis])
    if X.shape[0] == 0:
        return np.zeros(out_shape, _F32)
    if wa.global_pooling:
        if mode == "max":
            return X.max(axis=axes, keepdims=True)
        return (X.sum(axis=axes, keepdims=True, dtype=_F32) *
                _F32.type(1.0 / int(np.prod(g.size)))).astype(_F32)
    fill = -np.inf if mode == "max" else 0
    xp = _windowed_input(X, g, fill, axes)
    K = int(np.prod(g.kernel))
    if K <= 64:  # a strided slice per kernel offset: cheap for the usual small kernels
        acc = None
        for offs in itertools.product(*(range(k) for k in g.kernel)):
            sl = [slice(None)] * X.ndim
            for ax, o, s, n in zip(axes, offs, g.stride, g.out):
                sl[ax] = slice(o, o + (n - 1) * s + 1, s)
            v = xp[tuple(sl)]
            if acc is None:
                acc = v.astype(_F32, copy=True)
            elif mode == "max":
                np.maximum(acc, v, out=acc)
            else:
                np.add(acc, v, out=acc)
    else:
        win = sliding_window_view(xp, g.kernel, axis=axes)
        sel = [slice(None)] * X.ndim
        for ax, s in zip(axes, g.stride):
            sel[ax] = slice(None, None, s)
        win = win[tuple(sel)]
        kax = tuple(range(X.ndim, X.ndim + g.nd))
        acc = win.max(axis=kax) if mode == "max" else win.sum(axis=kax, dtype=_F32)
    if mode == "max":
        return np.ascontiguousarray(acc, dtype=_F32)
    if ctx.args.count_include_pad:
        scale = np.full(g.out, 1.0 / K)
    else:  # windows clipped to the input: the count is a product of per-axis counts
        scale = np.ones(())
        for n, k, s, h, o in zip(g.size, g.kernel, g.stride, g.pad_head, g.out):
            start = np.arange(o) * s - h
            cnt = np.minimum(start + k, n) - np.maximum(start, 0)
            scale = np.multiply.outer(scale, 1.0 / cnt)
    shape = [1] * X.ndim
    for ax, o in zip(axes, g.out):
        shape[ax] = o
    acc *= scale.astype(_F32).reshape(shape)
    return np.ascontiguousarray(acc, dtype=_F32)


@op("MaxPool", inputs=1, outputs=1, args=_geometry_args(global_pooling=True),
    infer=_pool_infer)
def max_pool(ctx, X):
    """Max over each window; padded positions never win."""
    return _pool(ctx, X, "max")


@op("AveragePool", inputs=1, outputs=1,
    args=_geometry_args(global_pooling=True, count_include_pad=True), infer=_pool_infer)
def average_pool(ctx, X):
    """Mean over each window: over the window's input positions, or (count_include_pad)
    the window's sum divided by the full kernel size."""
    return _pool(ctx, X, "avg")


for _suffix in ("1D", "2D", "3D"):
    alias("Conv" + _suffix, "Conv")
    alias("MaxPool" + _suffix, "MaxPool")
    alias("AveragePool" + _suffix, "AveragePool")
del _suffix
