"""Shape ops: Concat, Split, Reshape, Flatten, FlattenToVec, Transpose, Squeeze, ExpandDims,
Slice, Shape, and the gradient ops ResizeLike and SliceGradient (Caffe2 1.x semantics).

Each op validates in one plan function that both its shape rule (on TensorTypes) and its
reference (on the arrays' shapes) call, so a net is rejected the same way before and
while it runs.

Gradients are Caffe2 1.x's makers': Concat <-> Split (Concat's gradient splits by its
split_info output), Reshape of the output gradient to the forward's old_shape output,
Flatten/FlattenToVec -> ResizeLike, Transpose by the inverse permutation, Squeeze <->
ExpandDims, Slice -> SliceGradient; Shape has none (an error, as in Caffe2).

Some of those gradient ops take a shape or split sizes as an input (data), though the
values are fixed once the forward's input shapes are: `KnownInts` carries them through
shape inference, so the planner still sees static shapes (see its docstring).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from c2compile.errors import ArgumentError, ShapeError
from c2compile.ops.schema import Arg, REQUIRED, TensorType, alias, canonical_axis, op

I32 = np.dtype(np.int32)
I64 = np.dtype(np.int64)
INDEX_TYPES = (I32, I64)


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64))


def _t(a) -> TensorType:
    return TensorType(a.shape, a.dtype)


def _shp(s) -> str:
    return "?" if s is None else str(list(s))


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class KnownInts(TensorType):
    """The type of a small integer tensor whose values shape inference already knows:
    Concat's split_info, Reshape's old_shape and Shape's output, when the input shapes are
    known. Split and Reshape reading such a blob as their sizes / new shape then get static
    output shapes (the gradients of Concat and Reshape compile). Anything that rebuilds a
    plain TensorType (the shape-inference pass, a compiled segment's inputs) drops the
    values: those readers then see a data-dependent shape, as before. It compares equal
    to the plain TensorType of the same shape and dtype."""
    value: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "value", tuple(int(v) for v in self.value))

    def __eq__(self, other):
        if not isinstance(other, TensorType):
            return NotImplemented
        return (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self):
        return hash((self.shape, self.dtype))


def known_ints(t: TensorType | None):
    """The values of `t` if shape inference knows them (a KnownInts), else None."""
    return t.value if isinstance(t, KnownInts) else None


def _order_axis(ctx) -> int:
    """Concat/Split: `axis`, or the C axis of `order` (NCHW: 1, NHWC: 3); not both."""
    if ctx.has("axis") and ctx.has("order"):
        ctx.fail("give either 'axis' or 'order', not both", cls=ArgumentError)
    if ctx.args.add_axis and not ctx.has("axis"):
        # Caffe2 honours add_axis only next to an explicit axis.
        ctx.fail("add_axis needs an explicit 'axis' argument", cls=ArgumentError)
    if ctx.has("axis"):
        return ctx.args.axis
    order = ctx.args.order if ctx.has("order") else "NCHW"
    if order not in ("NCHW", "NHWC"):
        ctx.fail(f"order={order!r}; must be \"NCHW\" or \"NHWC\"", cls=ArgumentError)
    return 1 if order == "NCHW" else 3


# ----------------------------------------------------------------------------- Concat

def _concat_plan(ctx, types):
    """(axis, output shape, split sizes); shape and axis None where an input shape is unknown."""
    axis = _order_axis(ctx)
    add = bool(ctx.args.add_axis)
    d0 = types[0].dtype
    for j, t in enumerate(types[1:], 1):
        if d0 is not None and t.dtype is not None and t.dtype != d0:
            ctx.fail(f"all inputs must have the same dtype: input 0 '{ctx.inputs[0]}' is {d0}, "
                     f"input {j} '{ctx.inputs[j]}' is {t.dtype}", blob=ctx.inputs[j])
    if any(t.shape is None for t in types):
        return None, None, None
    s0 = types[0].shape
    ax = canonical_axis(ctx, axis, len(s0) + add)
    for j, t in enumerate(types[1:], 1):
        s = t.shape
        bad = len(s) != len(s0) or any(s[i] != s0[i] for i in range(len(s0))
                                       if add or i != ax)
        if bad:
            rule = ("the same shape (add_axis=1)" if add
                    else f"the same shape except along axis {ax}")
            ctx.fail(f"input 0 '{ctx.inputs[0]}' has shape {_shp(s0)} and input {j} "
                     f"'{ctx.inputs[j]}' has shape {_shp(s)}; Concat needs {rule}",
                     blob=ctx.inputs[j])
    n = len(types)
    if add:
        return ax, s0[:ax] + (n,) + s0[ax:], [1] * n
    sizes = [t.shape[ax] for t in types]
    return ax, s0[:ax] + (sum(sizes),) + s0[ax + 1:], sizes


def _concat_infer(ctx, *types):
    _, out, sizes = _concat_plan(ctx, types)
    info = (TensorType((len(types),), I32) if sizes is None
            else KnownInts((len(types),), I32, value=sizes))
    return [TensorType(out, types[0].dtype), info]


_AXIS_ARGS = [Arg("axis", "int", None), Arg("order", "str", None), Arg("add_axis", "int", 0)]


def _concat_grad(g):
    """Split the output gradient by split_info, along the same axis (args copied)."""
    if not g.has_GO(0):  # only split_info's "gradient" flows: nothing to do, as Caffe2
        return []
    return [g.op("Split", [g.GO(0), g.O(1)], [g.GI(i) for i in range(g.num_inputs)])]


# `split` is Split's argument: Split's gradient (a Concat) carries it over with the other
# arguments, as Caffe2's does, and Concat ignores it.
@op("Concat", inputs=(1, None), outputs=2,
    args=_AXIS_ARGS + [Arg("split", "ints", None, doc="ignored (Split's gradient copies it)")],
    infer=_concat_infer, grad=_concat_grad)
def concat(ctx, *xs):
    """Concatenate along `axis` (default: C of `order`, NCHW -> 1); with add_axis=1 stack
    along a new axis. Output 1 (split_info, int32) holds each input's size along axis."""
    ax, _, sizes = _concat_plan(ctx, [_t(x) for x in xs])
    if ctx.args.add_axis:
        y = np.stack(xs, axis=ax)
    else:
        y = np.concatenate(xs, axis=ax)
    return y, np.asarray(sizes, dtype=np.int32)


alias("DepthConcat", "Concat")


# ----------------------------------------------------------------------------- Split

def _split_plan(ctx, X: TensorType, split_t: TensorType | None, split_vals=None):
    """(axis, [output shapes]) or (None, None) when not known without data."""
    axis = _order_axis(ctx)
    n = ctx.num_outputs
    if split_t is not None:
        if ctx.has("split"):
            ctx.fail("the split sizes are given both as input 1 and as argument 'split'",
                     cls=ArgumentError)
        if split_t.dtype is not None and split_t.dtype != I32:
            ctx.fail(f"input 1 '{ctx.inputs[1]}' (split sizes) is {split_t.dtype}; it must "
                     "be int32", blob=ctx.inputs[1])
        if split_t.shape is not None and split_t.size != n:
            ctx.fail(f"input 1 '{ctx.inputs[1]}' has {split_t.size} split sizes for {n} "
                     "outputs", blob=ctx.inputs[1])
    elif ctx.args.split and len(ctx.args.split) != n:
        ctx.fail(f"split={ctx.args.split} has {len(ctx.args.split)} sizes for {n} outputs",
                 cls=ArgumentError)
    if X.shape is None:
        return None, None
    ax = canonical_axis(ctx, axis, len(X.shape))
    C = X.shape[ax]
    if split_t is not None:
        if split_vals is None:
            return ax, None
        sizes = [int(v) for v in np.asarray(split_vals).reshape(-1)]
        src, cls = f"input 1 '{ctx.inputs[1]}'", ShapeError
    elif ctx.args.split:
        sizes, src, cls = list(ctx.args.split), "argument split", ArgumentError
    else:
        if C % n:
            ctx.fail(f"input '{ctx.inputs[0]}' of shape {_shp(X.shape)} has {C} entries along "
                     f"axis {ax}, which do not split equally into {n} outputs",
                     blob=ctx.inputs[0])
        sizes, src, cls = [C // n] * n, None, ShapeError
    if any(s < 0 for s in sizes):
        ctx.fail(f"{src} has negative split sizes {sizes}", cls=cls)
    if ctx.args.add_axis:
        if C != n:
            ctx.fail(f"add_axis=1: input '{ctx.inputs[0]}' of shape {_shp(X.shape)} has {C} "
                     f"entries along axis {ax} for {n} outputs", blob=ctx.inputs[0])
        out = X.shape[:ax] + X.shape[ax + 1:]
        return ax, [out] * n
    if sum(sizes) != C:
        ctx.fail(f"split sizes {sizes} ({src}) sum to {sum(sizes)}, but input "
                 f"'{ctx.inputs[0]}' of shape {_shp(X.shape)} has {C} along axis {ax}",
                 cls=cls)
    return ax, [X.shape[:ax] + (s,) + X.shape[ax + 1:] for s in sizes]


def _split_infer(ctx, X, split_t=None):
    _, shapes = _split_plan(ctx, X, split_t, known_ints(split_t))
    if shapes is None:
        shapes = [None] * ctx.num_outputs
    return [TensorType(s, X.dtype) for s in shapes]


def _split_grad(g):
    """Concat the outputs' gradients back along the axis (args copied, `split` included).

    As in Caffe2, only the outputs that have a gradient are concatenated: when some have
    none, the input's gradient comes out smaller than the input (harmless when nothing
    reads it, e.g. a split data blob; a gradient op that does read it rejects its shape)."""
    x_grad = g.GI(0)
    return [g.op("Concat", [g.GO(i) for i in range(g.num_outputs) if g.has_GO(i)],
                 [x_grad, f"_{x_grad}_dims"])]


@op("Split", inputs=(1, 2), outputs=(1, None),
    args=_AXIS_ARGS + [Arg("split", "ints", None)], infer=_split_infer, grad=_split_grad)
def split(ctx, X, split_sizes=None):
    """Split along `axis` (or the C axis of `order`) into sizes given by input 1 (int32),
    argument `split`, or else equally. add_axis=1 (Concat's gradient) drops the axis."""
    ax, shapes = _split_plan(ctx, _t(X), None if split_sizes is None else _t(split_sizes),
                             split_sizes)
    outs, start = [], 0
    for s in shapes:
        k = 1 if ctx.args.add_axis else s[ax]
        part = np.take(X, np.arange(start, start + k), axis=ax)
        outs.append(part.reshape(s))
        start += k
    return outs


alias("DepthSplit", "Split")


# ----------------------------------------------------------------------------- Reshape

def _reshape_target(ctx, in_shape, new_shape, cls):
    """Caffe2's rule: 0 copies the input's dim (non-empty input only), one -1 is inferred."""
    where = ("input 1 '" + ctx.inputs[1] + "'") if cls is ShapeError else "argument shape"
    ns = [int(d) for d in new_shape]
    if any(d < -1 for d in ns):
        ctx.fail(f"new shape {ns} ({where}) has a negative dimension other than -1", cls=cls)
    if ns.count(-1) > 1:
        ctx.fail(f"new shape {ns} ({where}) has more than one -1", cls=cls)
    total = _prod(in_shape)
    if total:
        for i in range(min(len(ns), len(in_shape))):
            if ns[i] == 0:
                ns[i] = in_shape[i]
    size = _prod([d for d in ns if d != -1])
    msg = (f"cannot reshape input '{ctx.inputs[0]}' of shape {_shp(in_shape)} ({total} "
           f"elements) to {list(new_shape)} ({where})")
    if -1 in ns:
        if total and (size == 0 or total % size):
            ctx.fail(msg, blob=ctx.inputs[0])
        ns[ns.index(-1)] = total // size if total else 0
    elif size != total:
        ctx.fail(msg, blob=ctx.inputs[0])
    return tuple(ns)


def _reshape_check(ctx, X: TensorType, shape_t: TensorType | None):
    if shape_t is None and not ctx.has("shape"):
        ctx.fail("the new shape must be given by argument 'shape' or by input 1",
                 cls=ArgumentError)
    if shape_t is not None:
        if ctx.has("shape"):
            ctx.fail("the new shape is given both as input 1 and as argument 'shape'",
                     cls=ArgumentError)
        if shape_t.dtype is not None and shape_t.dtype not in INDEX_TYPES:
            ctx.fail(f"input 1 '{ctx.inputs[1]}' (new shape) is {shape_t.dtype}; it must be "
                     "int32 or int64", blob=ctx.inputs[1])
        if shape_t.shape is not None and len(shape_t.shape) != 1:
            ctx.fail(f"input 1 '{ctx.inputs[1]}' (new shape) has shape {_shp(shape_t.shape)};"
                     " it must be 1-d", blob=ctx.inputs[1])
        return shape_t.dtype
    return I64


def _reshape_infer(ctx, X, shape_t=None):
    old_dtype = _reshape_check(ctx, X, shape_t)
    out = None
    if X.shape is None:
        return [TensorType(None, X.dtype), TensorType(None, old_dtype)]
    if shape_t is None:
        out = _reshape_target(ctx, X.shape, ctx.args.shape, ArgumentError)
    elif known_ints(shape_t) is not None:
        out = _reshape_target(ctx, X.shape, known_ints(shape_t), ShapeError)
    return [TensorType(out, X.dtype), KnownInts((len(X.shape),), old_dtype, value=X.shape)]


def _reshape_grad(g):
    """Reshape the output gradient back to old_shape (output 1). Caffe2 copies no
    arguments here: `shape` would clash with the shape input."""
    x_grad = g.GI(0)
    return [g.op("Reshape", [g.GO(0), g.O(1)], [x_grad, f"_{x_grad}_dims"], copy_args=False)]


@op("Reshape", inputs=(1, 2), outputs=2, inplace=[(0, 0)],
    args=[Arg("shape", "ints", None)], infer=_reshape_infer, grad=_reshape_grad)
def reshape(ctx, X, new_shape=None):
    """Reshape to argument `shape` or input 1 (int32/int64, 1-d). A 0 copies the input's
    dim at that index, one -1 is inferred. Output 1 is the old shape (int64, or input 1's
    dtype)."""
    old_dtype = _reshape_check(ctx, _t(X), None if new_shape is None else _t(new_shape))
    if new_shape is None:
        target = _reshape_target(ctx, X.shape, ctx.args.shape, ArgumentError)
    else:
        target = _reshape_target(ctx, X.shape, list(new_shape), ShapeError)
    return X.reshape(target).copy(), np.asarray(X.shape, dtype=old_dtype).reshape(X.ndim)


# ----------------------------------------------------------------------------- Flatten

def _flatten_shape(ctx, shape):
    axis = ctx.args.axis
    if shape is None:
        return None
    if not 0 <= axis <= len(shape):
        ctx.fail(f"axis={axis}; input '{ctx.inputs[0]}' of shape {_shp(shape)} needs "
                 f"0 <= axis <= {len(shape)}", cls=ArgumentError)
    return (_prod(shape[:axis]), _prod(shape[axis:]))


def _resize_like_grad(g):
    """Caffe2's gradient of the flattening ops: dY given X's shape (forward args copied)."""
    return [g.op("ResizeLike", [g.GO(0), g.I(0)], [g.GI(0)])]


@op("Flatten", inputs=1, outputs=1, args=[Arg("axis", "int", 1)],
    infer=lambda ctx, X: [TensorType(_flatten_shape(ctx, X.shape), X.dtype)],
    grad=_resize_like_grad)
def flatten(ctx, X):
    """2-d [prod(dims[:axis]), prod(dims[axis:])]."""
    return X.reshape(_flatten_shape(ctx, X.shape)).copy()


def _flatten_vec_shape(ctx, shape):
    if shape is None:
        return None
    if len(shape) < 1:
        ctx.fail(f"input '{ctx.inputs[0]}' is 0-d; FlattenToVec takes rank >= 1",
                 blob=ctx.inputs[0])
    return (_prod(shape),)


@op("FlattenToVec", inputs=1, outputs=1,
    infer=lambda ctx, X: [TensorType(_flatten_vec_shape(ctx, X.shape), X.dtype)],
    grad=_resize_like_grad)
def flatten_to_vec(ctx, X):
    """1-d, all elements."""
    return X.reshape(_flatten_vec_shape(ctx, X.shape)).copy()


def _resize_like_infer(ctx, X, like):
    if X.shape is not None and like.shape is not None and X.size != like.size:
        ctx.fail(f"input 0 '{ctx.inputs[0]}' has shape {_shp(X.shape)} ({X.size} elements) "
                 f"and input 1 '{ctx.inputs[1]}' has shape {_shp(like.shape)} ({like.size}); "
                 "ResizeLike needs the same number of elements", blob=ctx.inputs[0])
    return [TensorType(like.shape, X.dtype)]


# `axis` is accepted (and ignored) because Flatten's gradient copies it onto ResizeLike.
@op("ResizeLike", inputs=2, outputs=1, args=[Arg("axis", "int", None, doc="ignored")],
    infer=_resize_like_infer)
def resize_like(ctx, X, like):
    """X's data (and dtype) under input 1's shape; both have the same number of elements."""
    _resize_like_infer(ctx, _t(X), _t(like))
    return X.reshape(like.shape).copy()


# ----------------------------------------------------------------------------- Transpose

_TRANSPOSE_TYPES = (np.dtype(np.float32), np.dtype(np.float64), I32, I64)


def _transpose_axes(ctx, X: TensorType):
    axes = list(ctx.args.axes or [])
    if sorted(axes) != list(range(len(axes))):
        ctx.fail(f"axes={axes} is not a permutation of 0..{len(axes) - 1}", cls=ArgumentError)
    if X.dtype is not None and X.dtype not in _TRANSPOSE_TYPES:
        ctx.fail(f"input '{ctx.inputs[0]}' is {X.dtype}; Transpose takes float32, float64, "
                 "int32 or int64", blob=ctx.inputs[0])
    if X.shape is None:
        return None
    if not axes:
        return list(range(len(X.shape)))[::-1]
    if len(axes) != len(X.shape):
        ctx.fail(f"axes={axes} has {len(axes)} entries for input '{ctx.inputs[0]}' of shape "
                 f"{_shp(X.shape)}", cls=ArgumentError)
    return axes


def _transpose_infer(ctx, X):
    axes = _transpose_axes(ctx, X)
    return [TensorType(None if axes is None else tuple(X.shape[a] for a in axes), X.dtype)]


def _transpose_grad(g):
    """Transpose back: by the inverse permutation of `axes`, or reversed again (no axes)."""
    if not g.has("axes"):
        return [g.op("Transpose", [g.GO(0)], [g.GI(0)])]
    axes = list(g.args.axes)
    if sorted(axes) != list(range(len(axes))):
        g.fail(f"axes={axes} is not a permutation of 0..{len(axes) - 1}")
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return [g.op("Transpose", [g.GO(0)], [g.GI(0)], axes=inverse)]


@op("Transpose", inputs=1, outputs=1, args=[Arg("axes", "ints", None)],
    infer=_transpose_infer, grad=_transpose_grad)
def transpose(ctx, X):
    """Permute dims by `axes` (default: reversed), as numpy.transpose."""
    return np.transpose(X, _transpose_axes(ctx, _t(X))).copy()


# ----------------------------------------------------------------------------- Squeeze / ExpandDims

def _dims_arg(ctx) -> list[int]:
    dims = sorted(set(ctx.args.dims))
    if not dims:
        ctx.fail("argument 'dims' must not be empty", cls=ArgumentError)
    if dims[0] < 0:
        ctx.fail(f"dims={ctx.args.dims}: dimension ids must be non-negative",
                 cls=ArgumentError)
    return dims


def _squeeze_shape(ctx, shape):
    dims = _dims_arg(ctx)
    if shape is None:
        return None
    if dims[-1] >= len(shape):
        ctx.fail(f"dims={ctx.args.dims}: input '{ctx.inputs[0]}' of shape {_shp(shape)} needs "
                 f"at least {dims[-1] + 1} dimensions", blob=ctx.inputs[0])
    for d in dims:
        if shape[d] != 1:
            ctx.fail(f"cannot squeeze dim {d} of input '{ctx.inputs[0]}' of shape "
                     f"{_shp(shape)}: it is {shape[d]}, not 1", blob=ctx.inputs[0])
    return tuple(s for i, s in enumerate(shape) if i not in dims)


@op("Squeeze", inputs=1, outputs=1, inplace=[(0, 0)], args=[Arg("dims", "ints", REQUIRED)],
    infer=lambda ctx, X: [TensorType(_squeeze_shape(ctx, X.shape), X.dtype)],
    grad=lambda g: [g.op("ExpandDims", [g.GO(0)], [g.GI(0)])])
def squeeze(ctx, X):
    """Drop the size-1 dims listed in `dims` (sorted, duplicates ignored)."""
    return X.reshape(_squeeze_shape(ctx, X.shape)).copy()


def _expand_shape(ctx, shape):
    dims = _dims_arg(ctx)
    if shape is None:
        return None
    if len(shape) + len(dims) < dims[-1] + 1:
        ctx.fail(f"dims={ctx.args.dims}: input '{ctx.inputs[0]}' of shape {_shp(shape)} needs "
                 f"at least {dims[-1] + 1 - len(dims)} dimensions", blob=ctx.inputs[0])
    out = list(shape)
    for d in dims:
        out.insert(d, 1)
    return tuple(out)


@op("ExpandDims", inputs=1, outputs=1, inplace=[(0, 0)],
    args=[Arg("dims", "ints", REQUIRED)],
    infer=lambda ctx, X: [TensorType(_expand_shape(ctx, X.shape), X.dtype)],
    grad=lambda g: [g.op("Squeeze", [g.GO(0)], [g.GI(0)])])
def expand_dims(ctx, X):
    """Insert size-1 dims at the indices of `dims`, as numbered in the output."""
    return X.reshape(_expand_shape(ctx, X.shape)).copy()


# ----------------------------------------------------------------------------- Slice

def _slice_check(ctx, starts_t=None, ends_t=None):
    """Slice takes [X] with arguments starts/ends, or [X, starts, ends];
    SliceGradient the same with dY appended."""
    grad = ctx.type == "SliceGradient"
    if ctx.num_inputs == 2 + grad:
        ctx.fail(f"takes {1 + grad} input{'s' * grad} (with arguments starts/ends) or "
                 f"{3 + grad} ({'X, starts, ends, dY' if grad else 'data, starts, ends'}), got "
                 f"{2 + grad}", cls=ArgumentError)
    if ctx.num_inputs == 3 + grad:
        if ctx.has("starts") or ctx.has("ends"):
            ctx.fail("starts/ends are given both as inputs and as arguments",
                     cls=ArgumentError)
        for i, t in ((1, starts_t), (2, ends_t)):
            if t.dtype is not None and t.dtype not in INDEX_TYPES:
                ctx.fail(f"input {i} '{ctx.inputs[i]}' is {t.dtype}; it must be int32 or "
                         "int64", blob=ctx.inputs[i])
            if t.shape is not None and len(t.shape) != 1:
                ctx.fail(f"input {i} '{ctx.inputs[i]}' has shape {_shp(t.shape)}; it must "
                         "be 1-d", blob=ctx.inputs[i])
        if None not in (starts_t.dtype, ends_t.dtype) and starts_t.dtype != ends_t.dtype:
            ctx.fail(f"starts is {starts_t.dtype} but ends is {ends_t.dtype}; they must have "
                     "the same dtype", blob=ctx.inputs[2])
    else:
        for name in ("starts", "ends"):
            if not ctx.has(name):
                ctx.fail(f"argument '{name}' is required when starts/ends are not inputs",
                         cls=ArgumentError)


def _slice_plan(ctx, shape, starts, ends, cls):
    """(output shape, index tuple). Negative indices count from dim + 1: -1 is the end."""
    starts, ends = [int(v) for v in starts], [int(v) for v in ends]
    where = f"starts={starts}, ends={ends}"
    if len(starts) != len(ends):
        ctx.fail(f"{where}: starts and ends differ in length", cls=cls)
    if len(starts) > len(shape):
        ctx.fail(f"{where}: more entries than input '{ctx.inputs[0]}' of shape "
                 f"{_shp(shape)} has dims", cls=cls)
    out, index, cut = [], [], []
    for i, d in enumerate(shape):
        if i >= len(starts):
            out.append(d)
            index.append(slice(None))
            continue
        if d == 0:
            out.append(0)
            index.append(slice(0, 0))
            continue
        s, e = starts[i], ends[i]
        s = d + 1 + s if s < 0 else s
        e = d + 1 + e if e < 0 else e
        s, e = min(s, d), min(e, d)
        if s < 0 or e < 0 or e < s:
            ctx.fail(f"{where}: bad range for dim {i} (size {d}) of input '{ctx.inputs[0]}' "
                     f"of shape {_shp(shape)}: [{s}, {e}) after adding {d} + 1 to negative "
                     "indices", cls=cls)
        out.append(e - s)
        index.append(slice(s, e))
        if s > 0 or e < d:
            cut.append(i)
    if len(cut) > 1 and _prod(shape) > 0:
        ctx.fail(f"{where} slices dims {cut} of input '{ctx.inputs[0]}' of shape "
                 f"{_shp(shape)}; Caffe2's Slice slices only one dimension at a time",
                 cls=cls)
    return tuple(out), tuple(index)


def _slice_infer(ctx, X, starts_t=None, ends_t=None):
    _slice_check(ctx, starts_t, ends_t)
    out = None
    if ctx.num_inputs == 1 and X.shape is not None:
        out, _ = _slice_plan(ctx, X.shape, ctx.args.starts, ctx.args.ends, ArgumentError)
    return [TensorType(out, X.dtype)]


def _slice_grad(g):
    """SliceGradient [X, (starts, ends,) dY] -> dX; starts/ends get no gradient."""
    return [g.op("SliceGradient", list(g.proto.input) + [g.GO(0)], [g.GI(0)])]


_SLICE_ARGS = [Arg("starts", "ints", None), Arg("ends", "ints", None)]


@op("Slice", inputs=(1, 3), outputs=1, args=_SLICE_ARGS, infer=_slice_infer, grad=_slice_grad)
def slice_(ctx, X, starts=None, ends=None):
    """X[starts:ends] per dimension (dims past len(starts) kept whole). A negative index i
    means dim + 1 + i, so end -1 is the end (inclusive of the last element); indices past
    the dim are clamped. Only one dimension may actually be cut."""
    _slice_check(ctx, None if starts is None else _t(starts), None if ends is None else _t(ends))
    out, index = _slice_index(ctx, X.shape, starts, ends)
    return X[index].reshape(out).copy()


def _slice_index(ctx, shape, starts=None, ends=None):
    """(output shape, index tuple) from the arguments, or from the starts/ends arrays."""
    if starts is None:
        return _slice_plan(ctx, shape, ctx.args.starts, ctx.args.ends, ArgumentError)
    return _slice_plan(ctx, shape, starts, ends, ShapeError)


def _slice_shape_matches(ctx, out, dY_shape) -> None:
    if dY_shape is not None and tuple(out) != tuple(dY_shape):
        ctx.fail(f"the gradient '{ctx.inputs[-1]}' has shape {_shp(dY_shape)}, but the slice "
                 f"of input '{ctx.inputs[0]}' it is the gradient of has shape {_shp(out)}",
                 blob=ctx.inputs[-1])


def _slice_gradient_infer(ctx, X, *rest):
    starts_t, ends_t = rest[:-1] if len(rest) == 3 else (None, None)
    dY = rest[-1]
    _slice_check(ctx, starts_t, ends_t)
    if ctx.num_inputs == 2 and X.shape is not None:
        out, _ = _slice_index(ctx, X.shape)
        _slice_shape_matches(ctx, out, dY.shape)
    # dX has X's shape and dY's dtype (Caffe2 writes it with the gradient's type)
    return [TensorType(X.shape, dY.dtype)]


@op("SliceGradient", inputs=(2, 4), outputs=1, args=_SLICE_ARGS, infer=_slice_gradient_infer)
def slice_gradient(ctx, X, *rest):
    """dX: zeros of X's shape with dY written into the slice Slice took (inputs X, dY, or
    X, starts, ends, dY; only X's shape is read)."""
    _slice_gradient_infer(ctx, _t(X), *(_t(v) for v in rest))
    out, index = _slice_index(ctx, X.shape, *rest[:-1])
    dY = rest[-1]
    _slice_shape_matches(ctx, out, dY.shape)
    dX = np.zeros(X.shape, dY.dtype)
    dX[index] = dY
    return dX


# ----------------------------------------------------------------------------- Shape

def _shape_axes(ctx, ndim):
    axes = list(ctx.args.axes or [])
    if ndim is not None:
        for a in axes:
            if not 0 <= a < ndim:
                ctx.fail(f"axes={axes}: axis {a} is out of range for input '{ctx.inputs[0]}' "
                         f"of rank {ndim}", cls=ArgumentError)
    return axes


def _shape_infer(ctx, X):
    axes = _shape_axes(ctx, None if X.shape is None else len(X.shape))
    if X.shape is not None:
        dims = [X.shape[a] for a in axes] if axes else list(X.shape)
        return [KnownInts((len(dims),), I64, value=dims)]
    return [TensorType((len(axes),) if axes else None, I64)]


# No gradient rule, on purpose: Caffe2 marks Shape SHOULD_NOT_DO_GRADIENT, an error should a
# gradient ever reach its int64 output, which is what the backward pass does for an op without
# a rule (a Python-registered rule may still give one).
@op("Shape", inputs=1, outputs=1, args=[Arg("axes", "ints", None)], infer=_shape_infer)
def shape(ctx, X):
    """int64 dims of X, or only those of `axes` (in that order)."""
    axes = _shape_axes(ctx, X.ndim)
    dims = [X.shape[a] for a in axes] if axes else list(X.shape)
    return np.asarray(dims, dtype=np.int64).reshape(len(dims))
