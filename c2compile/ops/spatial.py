"""Spatial ops: Conv, ConvTranspose, MaxPool, AveragePool (and their 1D/2D/3D aliases),
and their gradient ops (ConvGradient, ConvTransposeGradient, MaxPoolGradient,
AveragePoolGradient; Conv2D's is Conv2DGradient, ...), which take their forward op's
arguments and geometry.

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

Gradients, as Caffe2's gradient makers and CPU kernels have them: <Conv>Gradient reads
[X, W, dY] and writes [dW, db, dX] (no_bias=1: [dW, dX]; one output fewer: no dX);
ConvTranspose's gradient is a convolution of dY (`_conv_transpose_as_conv`); the pooling
gradients read [X, Y, dY]: max pooling hands dY to every input equal to its window's max
(all ties), average pooling spreads it with the forward's own factor.

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
        args += [Arg("no_bias", "bool", False,
                     "forward: must agree with the inputs; gradient: no bias gradient output"),
                 Arg("no_gradient_to_input", "bool", False,
                     "read by the gradient rule only (the gradient op then skips dX)")]
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
        return self._shape(n, channels, self.out)

    def input_shape(self, n: int, channels: int) -> tuple:
        return self._shape(n, channels, self.size)

    def _shape(self, n: int, channels: int, spatial) -> tuple:
        return (n, *spatial, channels) if self.channels_last else (n, channels, *spatial)


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


def _reframe(x: np.ndarray, axes, heads, lengths, value) -> np.ndarray:
    """`x` seen through a frame per axis: out[p] = x[p - head] where that is inside `x`,
    else `value`, for p in [0, length). A positive head pads, a negative one crops; so does
    the length at the tail. A view when the frame is `x` itself."""
    if all(h == 0 and n == x.shape[ax] for ax, h, n in zip(axes, heads, lengths)):
        return x
    shape = list(x.shape)
    src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    for ax, h, n in zip(axes, heads, lengths):
        lo, hi = max(0, -h), min(x.shape[ax], n - h)   # the part of x inside the frame
        hi = max(lo, hi)
        shape[ax] = n
        src[ax], dst[ax] = slice(lo, hi), slice(lo + h, hi + h)
    out = np.full(shape, value, x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


def _window_tails(g: _Geometry) -> list:
    """Per axis, how far the last window ends past the input (negative: before its end)."""
    return [(o - 1) * s + d * (k - 1) + 1 - n - h for o, s, d, k, n, h in
            zip(g.out, g.stride, g.dilation, g.kernel, g.size, g.pad_head)]


def _windowed_length(g: _Geometry) -> list:
    """Per axis, the span of the windows: from the first window's start to the last's end."""
    return [n + h + t for n, h, t in zip(g.size, g.pad_head, _window_tails(g))]


def _windowed_input(x: np.ndarray, g: _Geometry, value, axes) -> np.ndarray:
    """`x` padded/cropped along its spatial `axes` so that window j of axis i starts at
    j * stride exactly and the last window ends at the array's end."""
    return _reframe(x, axes, g.pad_head, _windowed_length(g), value)


def _unwindowed(dxp: np.ndarray, g: _Geometry, axes) -> np.ndarray:
    """The gradient of `_windowed_input`: the padding's share dropped, cropped parts 0."""
    return _reframe(dxp, axes, [-h for h in g.pad_head], g.size, 0)


def _taps(g: _Geometry, axes, ndim: int):
    """(kernel offset, index) per kernel tap: the index picks, from the windowed input,
    what that tap sees at every output position."""
    for offs in itertools.product(*(range(k) for k in g.kernel)):
        sl = [slice(None)] * ndim
        for ax, o, s, d, n in zip(axes, offs, g.stride, g.dilation, g.out):
            sl[ax] = slice(o * d, o * d + (n - 1) * s + 1, s)
        yield offs, tuple(sl)


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


def _channels_first(g: _Geometry, *arrays):
    """NHWC arrays (data, or filters M x k... x C/group) as NCHW views; NCHW ones as given."""
    return [np.moveaxis(a, -1, 1) if g.channels_last else a for a in arrays]


def _channels_back(g: _Geometry, a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if g.channels_last else a


def _im2col(x: np.ndarray, g: _Geometry, G: int) -> np.ndarray:
    """Columns (N, G, P, Cg * K) of channels-first `x`: row p of group g holds what output
    position p's window sees of the group's channels, 0 in the padding."""
    nd = g.nd
    N, C = x.shape[:2]
    Cg = C // G
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
    return win.transpose(order).reshape(N, G, P, Cg * K)


def _conv_forward(x: np.ndarray, w: np.ndarray, g: _Geometry, G: int) -> np.ndarray:
    """Grouped N-d convolution by im2col + one batched GEMM (float32 accumulation)."""
    x, w = _channels_first(g, x, w)
    N, M = x.shape[0], w.shape[0]
    Mg = M // G
    cols = _im2col(x, g, G)
    wmat = w.reshape(G, Mg, -1).transpose(0, 2, 1)
    y = np.matmul(cols, wmat)  # (N, G, P, Mg)
    if g.channels_last:
        return y.transpose(0, 2, 1, 3).reshape((N,) + g.out + (M,))
    return y.transpose(0, 1, 3, 2).reshape((N, M) + g.out)


def _conv_filter_grad(x: np.ndarray, dy: np.ndarray, w_shape, g: _Geometry,
                      G: int) -> np.ndarray:
    """dW of a convolution: per group, dY_g[Mg, N*P] . cols[N*P, Cg*K]."""
    x, dy = _channels_first(g, x, dy)
    N, M = dy.shape[:2]
    Mg, P = M // G, int(np.prod(g.out, dtype=np.int64))
    cols = _im2col(x, g, G)                                        # (N, G, P, CK)
    cols = cols.transpose(1, 0, 2, 3).reshape(G, N * P, cols.shape[-1])
    dyg = dy.reshape(N, G, Mg, P).transpose(1, 2, 0, 3).reshape(G, Mg, N * P)
    dw = np.matmul(dyg, cols)                                      # (G, Mg, CK)
    cf_shape = (w_shape[0], w_shape[-1], *w_shape[1:-1]) if g.channels_last else w_shape
    return np.ascontiguousarray(_channels_back(g, dw.reshape(cf_shape)))


def _conv_input_grad(dy: np.ndarray, w: np.ndarray, g: _Geometry, G: int) -> np.ndarray:
    """dX of a convolution: the columns' gradient W_g^T . dY_g, added back (col2im) onto
    the input positions each window saw; what fell in the padding is dropped."""
    dy, w = _channels_first(g, dy, w)
    nd = g.nd
    N, M = dy.shape[:2]
    C = w.shape[1] * G
    Mg, Cg, P = M // G, C // G, int(np.prod(g.out, dtype=np.int64))
    dyg = dy.reshape(N, G, Mg, P).transpose(0, 1, 3, 2)            # (N, G, P, Mg)
    dcols = np.matmul(dyg, w.reshape(G, Mg, -1))                   # (N, G, P, CK)
    dcols = dcols.reshape((N, G) + g.out + (Cg,) + g.kernel)
    order = (0, 1, 2 + nd) + tuple(range(2, 2 + nd)) + tuple(range(3 + nd, 3 + 2 * nd))
    dcols = dcols.transpose(order).reshape((N, C) + g.out + g.kernel)
    axes = tuple(range(2, 2 + nd))
    dxp = np.zeros((N, C, *_windowed_length(g)), _F32)
    for offs, sl in _taps(g, axes, 2 + nd):
        dxp[sl] += dcols[(Ellipsis,) + offs]
    return np.ascontiguousarray(_channels_back(g, _unwindowed(dxp, g, axes)))


def _bias_grad(dy: np.ndarray, g: _Geometry) -> np.ndarray:
    """db: dY summed over the batch and the spatial axes (in float64, rounded once)."""
    axes = (0,) + (tuple(range(1, 1 + g.nd)) if g.channels_last else tuple(range(2, 2 + g.nd)))
    return dy.sum(axis=axes, dtype=np.float64).astype(_F32)


def _conv_grad_rule(g):
    """Caffe2's GetConvGradient (ConvTranspose's is the same): <type>Gradient reads
    [X, W, dY] and writes [dW, db, dX]; without a bias input it writes [dW, dX] and gets
    no_bias=1; with no_gradient_to_input=1 it leaves dX out."""
    ins = [g.I(0), g.I(1), g.GO(0)]
    dx = [] if g.args.no_gradient_to_input else [g.GI(0)]
    if g.num_inputs == 3:
        return [g.op(g.type + "Gradient", ins, [g.GI(1), g.GI(2)] + dx)]
    return [g.op(g.type + "Gradient", ins, [g.GI(1)] + dx, no_bias=1)]


_CONV_ARGS = _geometry_args(global_pooling=True, no_bias=True)


@op("Conv", inputs=(2, 3), outputs=1, args=_CONV_ARGS, infer=_conv_infer,
    grad=_conv_grad_rule)
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


# ----------------------------------------------------------------- gradients of Conv, ConvTranspose

def _require_f32(ctx, types) -> None:
    for i, t in enumerate(types):
        if not isinstance(t, TensorType):
            t = TensorType(t.shape, t.dtype)
        require_dtype(ctx, t, [np.float32], what=f"input {i} '{ctx.inputs[i]}'")


def _check_grad_input(ctx, i: int, t, expected, what="the forward output") -> None:
    """Input i (dY, or the forward output Y) must have the forward output's shape."""
    if expected is not None and t.shape is not None and tuple(t.shape) != tuple(expected):
        ctx.fail(f"'{ctx.inputs[i]}' has shape {list(t.shape)}, but {what} of these "
                 f"arguments has shape {list(expected)}", blob=ctx.inputs[i])


def _grad_outputs(ctx) -> tuple[bool, bool]:
    """(writes db, writes dX) of a (Conv|ConvTranspose)Gradient op: Caffe2's outputs are
    [dW, db, dX], db left out under no_bias=1 and dX left out when the op has one output
    fewer (the rule's no_gradient_to_input)."""
    bias = not ctx.args.no_bias
    n = ctx.num_outputs
    if bias and n == 1:
        ctx.fail(f"{ctx.type} writes [dW, db, dX] (or [dW, db]); with one output it needs "
                 "no_bias=1 (then it writes [dW] or [dW, dX])", cls=ArgumentError)
    if not bias and n == 3:
        ctx.fail(f"{ctx.type} with no_bias=1 writes [dW, dX]: 3 outputs given "
                 f"{ctx.outputs}", cls=ArgumentError)
    return bias, n == (3 if bias else 2)


def _grad_results(ctx, dw, db, dx) -> list:
    """The gradients the op writes, of the thunks dW, db, dX (see `_grad_outputs`)."""
    bias, with_dx = _grad_outputs(ctx)
    return [dw()] + ([db()] if bias else []) + ([dx()] if with_dx else [])


def _grad_types(ctx, X: TensorType, W: TensorType, bias_channels) -> list[TensorType]:
    bias, dx = _grad_outputs(ctx)
    out = [TensorType(W.shape, _F32)]
    if bias:
        out.append(TensorType(None if bias_channels is None else (bias_channels,), _F32))
    if dx:
        out.append(TensorType(X.shape, _F32))
    return out


def _conv_grad_infer(ctx, X: TensorType, W: TensorType, dY: TensorType):
    wa = _window_args(ctx)
    _require_f32(ctx, (X, W, dY))
    g, M = _conv_check(ctx, wa, X.shape, W.shape, None)
    if g is not None and M is not None:
        _check_grad_input(ctx, 2, dY, g.output_shape(X.shape[0], M))
    return _grad_types(ctx, X, W, M)


@op("ConvGradient", inputs=3, outputs=(1, 3), args=_CONV_ARGS, infer=_conv_grad_infer)
def conv_gradient(ctx, X, filter, dY):
    """Conv's gradient: inputs [X, W, dY], outputs [dW, db, dX] (see `_grad_outputs`).
    dW = sum over images of dY_g . cols^T, db = dY summed over images and positions,
    dX = col2im(W_g^T . dY_g)."""
    wa = _window_args(ctx)
    _require_f32(ctx, (X, filter, dY))
    g, M = _conv_check(ctx, wa, X.shape, filter.shape, None)
    _check_grad_input(ctx, 2, dY, g.output_shape(X.shape[0], M))
    G = wa.group
    return _grad_results(ctx, lambda: _conv_filter_grad(X, dY, filter.shape, g, G),
                         lambda: _bias_grad(dY, g),
                         lambda: _conv_input_grad(dY, filter, g, G))


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


_CONV_TRANSPOSE_ARGS = _geometry_args(dilation=False, adj=True, no_bias=True)


@op("ConvTranspose", inputs=(2, 3), outputs=1, args=_CONV_TRANSPOSE_ARGS,
    infer=_conv_transpose_infer, grad=_conv_grad_rule)
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


def _conv_transpose_as_conv(ctx, wa: _WindowArgs, xs, ws):
    """ConvTranspose seen from its output: Y = col2im(W^T X) makes dX a convolution of dY
    with W (stride, kernel, pads as given; the adj rows get no share) and dW that
    convolution's filter gradient with X as its output gradient. Returns (the convolution's
    geometry over dY, the output channels), or None while shapes are unknown."""
    r = _conv_transpose_check(ctx, wa, xs, ws, None)
    if r is None:
        return None
    _, outs, C, pads = r
    sizes = tuple(xs[1:3]) if wa.channels_last else tuple(xs[2:4])
    stride = tuple(wa.stride or (1, 1))
    tails = tuple((n - 1) * s + k - o - h for n, s, k, o, h in
                  zip(sizes, stride, wa.kernel, outs, pads[:2]))
    return _Geometry(wa.channels_last, tuple(outs), tuple(wa.kernel), stride, (1, 1),
                     tuple(pads[:2]), tails, sizes), C


def _conv_transpose_grad_infer(ctx, X: TensorType, W: TensorType, dY: TensorType):
    wa = _window_args(ctx, transpose=True)
    _require_f32(ctx, (X, W, dY))
    r = None if W.shape is None else _conv_transpose_as_conv(ctx, wa, X.shape, W.shape)
    if r is not None:
        g, C = r
        _check_grad_input(ctx, 2, dY, g.input_shape(X.shape[0], C))
    return _grad_types(ctx, X, W, None if r is None else r[1])


@op("ConvTransposeGradient", inputs=3, outputs=(1, 3), args=_CONV_TRANSPOSE_ARGS,
    infer=_conv_transpose_grad_infer)
def conv_transpose_gradient(ctx, X, filter, dY):
    """ConvTranspose's gradient: inputs [X, W, dY], outputs [dW, db, dX] (see
    `_grad_outputs`). dX is dY convolved with W, dW that convolution's filter gradient
    with X as its output gradient (`_conv_transpose_as_conv`), db = dY summed."""
    wa = _window_args(ctx, transpose=True)
    _require_f32(ctx, (X, filter, dY))
    g, C = _conv_transpose_as_conv(ctx, wa, X.shape, filter.shape)
    _check_grad_input(ctx, 2, dY, g.input_shape(X.shape[0], C))
    G = wa.group
    return _grad_results(ctx, lambda: _conv_filter_grad(dY, X, filter.shape, g, G),
                         lambda: _bias_grad(dY, g),
                         lambda: np.ascontiguousarray(_conv_forward(dY, filter, g, G)))


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
        for _, sl in _taps(g, axes, X.ndim):
            v = xp[sl]
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
    acc *= _average_scale(ctx, g, X.ndim)
    return np.ascontiguousarray(acc, dtype=_F32)


def _average_scale(ctx, g: _Geometry, ndim: int) -> np.ndarray:
    """AveragePool's factor per output position (float32, shaped to broadcast against the
    output): 1 / kernel size with count_include_pad, else 1 / the number of input
    positions in the window (windows clipped to the input: a product of per-axis counts,
    in float64, rounded once)."""
    if ctx.args.count_include_pad:
        scale = np.full(g.out, 1.0 / int(np.prod(g.kernel)))
    else:
        scale = np.ones(())
        for n, k, s, h, o in zip(g.size, g.kernel, g.stride, g.pad_head, g.out):
            start = np.arange(o) * s - h
            cnt = np.minimum(start + k, n) - np.maximum(start, 0)
            scale = np.multiply.outer(scale, 1.0 / cnt)
    shape = [1] * ndim
    for ax, o in zip(g.spatial_axes, g.out):
        shape[ax] = o
    return scale.astype(_F32).reshape(shape)


def _pool_grad_rule(g):
    """Caffe2's pooling gradient maker: <type>Gradient reads [X, Y, dY], writes dX."""
    return [g.op(g.type + "Gradient", [g.I(0), g.O(0), g.GO(0)], [g.GI(0)])]


_MAX_POOL_ARGS = _geometry_args(global_pooling=True)
_AVERAGE_POOL_ARGS = _geometry_args(global_pooling=True, count_include_pad=True)


@op("MaxPool", inputs=1, outputs=1, args=_MAX_POOL_ARGS, infer=_pool_infer,
    grad=_pool_grad_rule)
def max_pool(ctx, X):
    """Max over each window; padded positions never win."""
    return _pool(ctx, X, "max")


@op("AveragePool", inputs=1, outputs=1, args=_AVERAGE_POOL_ARGS, infer=_pool_infer,
    grad=_pool_grad_rule)
def average_pool(ctx, X):
    """Mean over each window: over the window's input positions, or (count_include_pad)
    the window's sum divided by the full kernel size."""
    return _pool(ctx, X, "avg")


def _pool_grad_infer(ctx, X: TensorType, Y: TensorType, dY: TensorType):
    wa = _window_args(ctx, pool=True)
    _require_f32(ctx, (X, Y, dY))
    if X.shape is not None:
        g = _geometry(ctx, wa, X.shape, what=f"X '{ctx.inputs[0]}'", pool=True)
        out = g.output_shape(X.shape[0], X.shape[g.channel_axis])
        _check_grad_input(ctx, 1, Y, out)
        _check_grad_input(ctx, 2, dY, out, "the gradient of the forward output")
    return [TensorType(X.shape, _F32)]


def _pool_grad(ctx, X: np.ndarray, Y: np.ndarray, dY: np.ndarray, mode: str) -> np.ndarray:
    """dX of MaxPool/AveragePool: each window hands its dY back to the input positions it
    covers (padding drops its share). Max: to every position equal to the window's Y (all
    ties, as Caffe2's CPU kernel; a NaN window gives nothing). Average: dY times the
    forward's factor (`_average_scale`)."""
    _pool_grad_infer(ctx, *(TensorType(a.shape, a.dtype) for a in (X, Y, dY)))  # validates
    wa = _window_args(ctx, pool=True)
    g = _geometry(ctx, wa, X.shape, what=f"X '{ctx.inputs[0]}'", pool=True)
    zero = _F32.type(0)
    if wa.global_pooling:
        if mode == "max":
            return np.where(X == Y, dY, zero)
        return np.ascontiguousarray(np.broadcast_to(
            dY * _F32.type(1.0 / int(np.prod(g.size))), X.shape))
    axes = g.spatial_axes
    xp = _windowed_input(X, g, -np.inf if mode == "max" else 0, axes)
    dxp = np.zeros(xp.shape, _F32)
    share = None if mode == "max" else dY * _average_scale(ctx, g, X.ndim)
    for _, sl in _taps(g, axes, X.ndim):
        dxp[sl] += np.where(xp[sl] == Y, dY, zero) if mode == "max" else share
    return np.ascontiguousarray(_unwindowed(dxp, g, axes))


@op("MaxPoolGradient", inputs=3, outputs=1, args=_MAX_POOL_ARGS, infer=_pool_grad_infer)
def max_pool_gradient(ctx, X, Y, dY):
    """MaxPool's gradient: inputs [X, Y, dY], output dX; every input position equal to
    its window's max gets that window's dY (ties all get it)."""
    return _pool_grad(ctx, X, Y, dY, "max")


@op("AveragePoolGradient", inputs=3, outputs=1, args=_AVERAGE_POOL_ARGS,
    infer=_pool_grad_infer)
def average_pool_gradient(ctx, X, Y, dY):
    """AveragePool's gradient: inputs [X, Y, dY] (Y only checked), output dX; each window
    spreads dY times the forward's factor over its input positions."""
    return _pool_grad(ctx, X, Y, dY, "avg")


# Caffe2 registers each alias with its own gradient op: Conv2D -> Conv2DGradient, ...
for _suffix in ("1D", "2D", "3D"):
    for _type in ("Conv", "MaxPool", "AveragePool"):
        alias(_type + _suffix, _type)
        alias(_type + _suffix + "Gradient", _type + "Gradient")
del _suffix, _type
