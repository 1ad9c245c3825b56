"""Cython kernels of the shape ops' gradients against the reference executor: ResizeLike,
SliceGradient, and the gradient forms of Split (by split_info) and Reshape (to old_shape),
which compile when the forward op ran in the same segment (KnownInts) and otherwise fall
back to the reference visibly.
"""
import numpy as np
from hypothesis import given, settings, strategies as st

from c2compile import core
from c2compile.runtime.compiled import CythonSegment, ReferenceSegment
from tests.backends.cpu_harness import Case, assert_compiled, check_cpu, run_both

SETTINGS = settings(max_examples=4, deadline=None)
DTYPES = [np.float32, np.float32, np.float64, np.int32, np.int64, np.uint8]


def _data(draw, shape, dtype=np.float32):
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape) * 10
    return x.astype(dtype)


def _shape(draw, lo=1, hi=4, empty=False):
    return draw(st.lists(st.integers(0 if empty else 1, 5), min_size=lo, max_size=hi))


@st.composite
def resize_like_case(draw):
    shape = _shape(draw, empty=draw(st.integers(0, 5)) == 0)
    like = list(draw(st.permutations(shape)))
    if draw(st.booleans()):
        like = [int(np.prod(shape))]
    args = dict(axis=draw(st.integers(0, 3))) if draw(st.booleans()) else {}
    return Case("ResizeLike", [_data(draw, shape, draw(st.sampled_from(DTYPES))),
                               _data(draw, like)], args)


@st.composite
def slice_gradient_case(draw):
    """One dim cut (or none), X of any dtype, dY's dtype deciding dX's."""
    shape = _shape(draw, empty=draw(st.integers(0, 6)) == 0)
    if draw(st.booleans()):
        shape[-1] = draw(st.integers(16, 40))  # rows long enough for memcpy
    k = draw(st.integers(1, len(shape)))
    starts, ends = [0] * k, [-1] * k
    out = list(shape)
    cut = draw(st.integers(0, k - 1))
    if shape[cut]:
        s = draw(st.integers(0, shape[cut]))
        e = draw(st.integers(s, shape[cut]))
        starts[cut] = draw(st.sampled_from([s, s - shape[cut] - 1]))
        ends[cut] = draw(st.sampled_from([e, e - shape[cut] - 1]))
        out[cut] = e - s
    x = _data(draw, shape, draw(st.sampled_from(DTYPES)))
    dy = _data(draw, out, draw(st.sampled_from(DTYPES)))
    return Case("SliceGradient", [x, dy], dict(starts=starts, ends=ends))


@SETTINGS
@given(cases=st.lists(st.one_of(resize_like_case(), slice_gradient_case()),
                      min_size=6, max_size=14))
def test_resize_like_and_slice_gradient_kernels(cases):
    check_cpu(cases)


@SETTINGS
@given(data=st.data())
def test_gradients_of_every_shape_op_compile_in_one_segment(data):
    """A forward chain of shape ops (drawn sizes, NCHW or NHWC) and the gradient ops
    Caffe2's backward pass adds: Split by split_info and Reshape to old_shape get static
    shapes from their forward ops (KnownInts), so nothing falls back."""
    n, h, w = (data.draw(st.integers(1, 3)) for _ in range(3))
    c = [data.draw(st.integers(1, 4)) for _ in range(2)]
    nhwc, stack = data.draw(st.booleans()), data.draw(st.booleans())
    if stack:   # Concat(add_axis=1) stacks equal shapes; its gradient Split drops the axis
        c[1] = c[0]
        concat_args = dict(axis=data.draw(st.integers(-5, 4)), add_axis=1)
    else:
        concat_args = dict(order="NHWC" if nhwc else "NCHW")
    feeds = {f"x{i}": _data(data.draw, (n, h, w, ci) if nhwc else (n, ci, h, w))
             for i, ci in enumerate(c)}
    size = n * h * w * sum(c)
    start = data.draw(st.integers(0, size - 1))
    stop = data.draw(st.integers(start, size))
    feeds["sl_grad"] = _data(data.draw, (stop - start,))
    net = core.Net("shape_grads")
    getattr(net, data.draw(st.sampled_from(["Concat", "DepthConcat"])))(
        ["x0", "x1"], ["cat", "info"], **concat_args)
    net.Reshape(["cat"], ["r", "old"], shape=[n if not stack else 2, -1])
    net.ExpandDims(["r"], ["e"], dims=[1])
    net.Transpose(["e"], ["t"], axes=[2, 0, 1])
    net.Squeeze(["t"], ["q"], dims=[2])
    net.Flatten(["q"], ["f"], axis=1)
    net.FlattenToVec(["f"], ["v"])
    net.Slice(["v"], ["sl"], starts=[start], ends=[stop])
    net.AddGradientOperators({"sl": "sl_grad"})
    assert [o.type for o in net.Proto().op][8:] == [
        "SliceGradient", "ResizeLike", "ResizeLike", "ExpandDims", "Transpose", "Squeeze",
        "Reshape", "Split"]
    got, segs = run_both(net, feeds)
    assert len(segs) == 1 and isinstance(segs[0], CythonSegment)
    assert_compiled(net.Name())
    for i in range(2):
        assert got[f"x{i}_grad"].shape == feeds[f"x{i}"].shape


def test_unknown_split_info_falls_back_visibly():
    """A gradient Split whose split_info comes from the workspace (no Concat in its segment)
    cannot have static output shapes: its segment variant runs on the reference and says
    why; the results are still right. A forward Split with a sizes input stays a
    ReferenceSegment of its own, as before."""
    feeds = dict(g=np.arange(12, dtype=np.float32).reshape(2, 6),
                 info=np.array([2, 4], np.int32))
    grad_split = core.CreateOperator("Split", ["g", "info"], ["a", "b"], axis=1)
    grad_split.is_gradient_op = True
    net = core.Net("unknown_info")
    net.Relu(["g"], ["r"])
    net.Proto().op.add().CopyFrom(grad_split)
    got, segs = run_both(net, feeds, ["a", "b"])
    np.testing.assert_array_equal(got["b"], feeds["g"][:, 2:])
    (seg,) = segs
    (variant,) = seg.variants.values()
    assert isinstance(variant, ReferenceSegment)
    assert "Split" in variant.why and "depends on data" in variant.why

    net = core.Net("forward_split")
    net.Relu(["g"], ["r"])
    net.Split(["r", "info"], ["a", "b"], axis=1)
    _, segs = run_both(net, feeds, ["a", "b"])
    assert [type(s).__name__ for s in segs] == ["CythonSegment", "ReferenceSegment"]


def test_slice_gradient_with_index_inputs_falls_back_alone():
    """SliceGradient's 4-input form reads its offsets from data: no kernel, the op runs on
    the reference while the ops around it compile."""
    feeds = dict(x=np.ones((2, 6), np.float32), s=np.array([0, 1], np.int32),
                 e=np.array([-1, 3], np.int32), dy=np.full((2, 2), 3.0, np.float32))
    net = core.Net("slice_grad_inputs")
    net.Relu(["x"], ["r"])
    net.SliceGradient(["r", "s", "e", "dy"], ["dx"])
    net.Relu(["dx"], ["out"])
    got, segs = run_both(net, feeds, ["out"])
    assert [type(s).__name__ for s in segs] == ["CythonSegment", "ReferenceSegment",
                                                "CythonSegment"]
    np.testing.assert_array_equal(got["out"][:, 1:3], 3.0)
