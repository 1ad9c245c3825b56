"""Shape ops as copies (template: shape.pyx.j2).

Concat, Split, Reshape, Flatten, FlattenToVec, Transpose, Squeeze, ExpandDims, Slice, Shape,
and the gradient ops ResizeLike and SliceGradient. Every output is its own buffer
(reshape-like ops copy; no blob aliases another), shapes and strides are literals, and the
argument parsing is the op definitions' own (`_concat_plan`, `_split_plan`, `_slice_plan`,
`_transpose_axes`, ...).

Forms whose output shape depends on data (sizes, shape or indices given as inputs) have no
kernel: `supports` sends them to the reference so the rest of the net still compiles. The
exception is the gradients of Concat and Reshape (a Split by split_info, a Reshape to
old_shape): those inputs are written by the forward op from static shapes, and shape
inference carries their values (`ops.shape.KnownInts`), so they compile like the argument
forms. Should the values be unknown after all (the forward op ran in another segment, or
the blob came from the workspace), the planner cannot fix the output shapes and that
segment variant runs on the reference, which `c2compile show --partition` names.

The ops that may run in place (Reshape, Squeeze, ExpandDims: input 0 -> output 0) copy only
when the pointers differ; after the first run they are the same buffer.
"""
from __future__ import annotations

import math

from c2compile.codegen.cython.lowering import KernelSpec, kernel
from c2compile.ops.schema import TensorType, canonical_axis
from c2compile.ops.shape import (_concat_plan, _order_axis, _shape_axes, _slice_index,
                                 _transpose_axes)


def _t(b) -> TensorType:
    return TensorType(b.shape, b.dtype)


def _copy(k: KernelSpec) -> None:
    k.vars.update(size=k.outs[0].size)


@kernel("Concat", "DepthConcat", template="shape.pyx.j2", macro="concat")
def concat(k: KernelSpec) -> None:
    """Output row o (the dims before axis) is the inputs' rows o, one after the other."""
    ax, out_shape, sizes = _concat_plan(k.op, [_t(b) for b in k.ins])
    outer = math.prod(out_shape[:ax])
    parts, off = [], 0
    for b in k.ins:
        inner = math.prod(b.shape[ax:])
        parts.append((b.name, inner, off))
        off += inner
    k.vars.update(outer=outer, row=off, parts=parts, sizes=sizes)


def _static_or_gradient(op) -> bool:
    """The argument form, or a gradient op whose sizes / shape input the forward op wrote
    (known to the planner when both ran in one segment; see the module docstring)."""
    return op.num_inputs == 1 or op.proto.is_gradient_op


@kernel("Split", "DepthSplit", template="shape.pyx.j2", macro="split",
        supports=_static_or_gradient)
def split(k: KernelSpec) -> None:
    """Input row o (the dims before axis) is the outputs' rows o, one after the other (the
    outputs' static shapes say how many; the sizes input, if any, is not read)."""
    ax = canonical_axis(k.op, _order_axis(k.op), k.ins[0].ndim)
    outer = math.prod(k.ins[0].shape[:ax])
    parts, off = [], 0
    for b in k.outs:
        inner = math.prod(b.shape[ax:])
        parts.append((b.name, inner, off))
        off += inner
    k.vars.update(outer=outer, row=off, parts=parts)


@kernel("Reshape", template="shape.pyx.j2", macro="reshape", supports=_static_or_gradient)
def reshape(k: KernelSpec) -> None:
    """Output 0: a copy; output 1: the old shape (int64, or the shape input's dtype; the
    shape input itself is not read: output 0's static shape already follows it)."""
    _copy(k)
    k.vars.update(old_shape=k.ins[0].shape)


@kernel("Flatten", "FlattenToVec", "Squeeze", "ExpandDims", "ResizeLike",
        template="shape.pyx.j2", macro="copy")
def flatten(k: KernelSpec) -> None:
    """A copy of the data under the new shape (ResizeLike: input 1's, never read)."""
    _copy(k)


@kernel("Transpose", template="shape.pyx.j2", macro="transpose")
def transpose(k: KernelSpec) -> None:
    """A strided copy walking the output in order. Size-1 dims are dropped and output dims
    that stay adjacent in the input are merged, so loops = dims that really move."""
    axes = _transpose_axes(k.op, _t(k.ins[0]))
    shape, strides = k.ins[0].shape, k.ins[0].strides
    dims: list[list[int]] = []  # [extent, input stride] per output dim, merged
    for a in axes:
        if shape[a] == 1:
            continue
        if dims and dims[-1][1] == strides[a] * shape[a]:
            dims[-1] = [dims[-1][0] * shape[a], strides[a]]
        else:
            dims.append([shape[a], strides[a]])
    if not dims:
        dims = [[1, 1]]
    k.vars.update(dims=dims, size=k.outs[0].size, axes=axes)


def _slice_block(k: KernelSpec, shape, out, index) -> None:
    """At most one dim is cut: per row of the dims before it, one contiguous block of the
    output (out_row elements) sits at `offset` in the input's row (in_row elements)."""
    cut = [i for i, (s, d) in enumerate(zip(index, shape))
           if s != slice(None) and (s.start > 0 or s.stop < d)]
    i = cut[0] if cut else 0  # nothing cut: one block
    start = index[i].start if cut else 0
    k.vars.update(outer=math.prod(shape[:i]), in_row=math.prod(shape[i:]),
                  out_row=math.prod(out[i:]), offset=start * math.prod(shape[i + 1:]),
                  size=math.prod(out), in_size=math.prod(shape))


@kernel("Slice", template="shape.pyx.j2", macro="slice",
        supports=lambda op: op.num_inputs == 1)
def slice_(k: KernelSpec) -> None:
    shape = k.ins[0].shape
    _slice_block(k, shape, *_slice_index(k.op, shape))


@kernel("SliceGradient", template="shape.pyx.j2", macro="slice_gradient",
        supports=lambda op: op.num_inputs == 2)
def slice_gradient(k: KernelSpec) -> None:
    """Zeros, then dY's rows into the block Slice read (the geometry of the forward Slice)."""
    shape = k.ins[0].shape
    _slice_block(k, shape, *_slice_index(k.op, shape))


@kernel("Shape", template="shape.pyx.j2", macro="shape")
def shape(k: KernelSpec) -> None:
    dims = k.ins[0].shape
    axes = _shape_axes(k.op, len(dims))
    k.vars.update(dims=[dims[a] for a in axes] if axes else list(dims))
